package jwtwarden

// #include "cgo_helpers.h"
import "C"

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// LogLevel is the severity of a log record, most severe first.
type LogLevel uint32

// The log levels (numbers from jwtwarden.h).
const (
	LogOff   LogLevel = C.JWTWARDEN_LOG_LEVEL_OFF
	LogError LogLevel = C.JWTWARDEN_LOG_LEVEL_ERROR
	LogWarn  LogLevel = C.JWTWARDEN_LOG_LEVEL_WARN
	LogInfo  LogLevel = C.JWTWARDEN_LOG_LEVEL_INFO
	LogDebug LogLevel = C.JWTWARDEN_LOG_LEVEL_DEBUG
	LogTrace LogLevel = C.JWTWARDEN_LOG_LEVEL_TRACE
)

// String is the level's name ("warn").
func (l LogLevel) String() string {
	switch l {
	case LogOff:
		return "off"
	case LogError:
		return "error"
	case LogWarn:
		return "warn"
	case LogInfo:
		return "info"
	case LogDebug:
		return "debug"
	case LogTrace:
		return "trace"
	}
	return "unknown"
}

var logger struct {
	sync.Mutex // serialises SetLogger
	fn         atomic.Pointer[func(LogLevel, string)]
}

// SetLogger sends the library's log records up to maxLevel to fn, for every
// verifier in the process (a nil fn or LogOff turns logging off). fn is
// called from any goroutine or library thread, so it must be safe for
// concurrent use; a panic in fn is recovered and the record dropped. Tokens
// are never logged whole, only a short fingerprint.
//
// Bridging to log/slog:
//
//	jwtwarden.SetLogger(func(l jwtwarden.LogLevel, msg string) {
//		slog.Info(msg, "component", "jwtwarden", "level", l.String())
//	}, jwtwarden.LogInfo)
func SetLogger(fn func(level LogLevel, message string), maxLevel LogLevel) error {
	logger.Lock()
	defer logger.Unlock()
	// Detach first: when this returns, the old fn is not running anywhere.
	if rc := C.jw_set_go_logger(C.uint32_t(LogOff), nil); rc != C.JWTWARDEN_RESULT_OK {
		return newError(uint32(rc), "")
	}
	if fn == nil || maxLevel == LogOff {
		logger.fn.Store(nil)
		return nil
	}
	logger.fn.Store(&fn)
	var cerr *C.jwtwarden_error
	if rc := C.jw_set_go_logger(C.uint32_t(maxLevel), &cerr); rc != C.JWTWARDEN_RESULT_OK {
		logger.fn.Store(nil)
		return errorFrom(rc, cerr)
	}
	return nil
}

//export jwtwardenGoLog
func jwtwardenGoLog(_ unsafe.Pointer, level C.uint32_t, message *C.char) {
	// A panic must not unwind into the library's (Rust and C) frames.
	defer func() { _ = recover() }()
	// SetLogger detaches the library's callback before it swaps fn, so fn
	// cannot change during a callback.
	if fn := logger.fn.Load(); fn != nil {
		(*fn)(LogLevel(level), C.GoString(message))
	}
}
