//! Bridge from the `log` facade (used by the engine) to Python's `logging`,
//! under the logger `jwtwarden` (`jwtwarden.issuer`, `jwtwarden.verifier`…
//! after the Rust module path).
//!
//! The rule that keeps this deadlock-free: **no thread ever waits for the GIL
//! while it may hold an engine lock.** So a record is never handed to Python
//! from inside `log()`:
//!
//! * On a Python thread inside an engine call (GIL released by
//!   [`crate::call::detached`]), records are buffered thread-locally. Right
//!   after the call, once the thread holds the GIL again, they are emitted
//!   by that same thread — synchronously and in order — if it is the main
//!   thread or a non-daemon `threading.Thread`. A daemon thread hands them to
//!   the queue below instead: during interpreter shutdown CPython < 3.14
//!   ends a daemon thread that waits for the GIL with `pthread_exit`, and a
//!   logging handler that blocks (a lock, I/O) would make that happen with
//!   this module's Rust frames on the stack, which aborts the process.
//! * Records from other threads (the engine's refresher) go to a bounded
//!   queue drained by one forwarder thread, which takes the GIL while holding
//!   nothing else.
//!
//! At interpreter exit an `atexit` hook ([`_shutdown_logging`]) stops the
//! forwarder and waits until it is not attached, then drains the queue
//! itself; after that nothing in this module touches the interpreter again
//! (later refresher records are dropped), so no thread tries to take the GIL
//! during finalization. After a `fork()` (from `os.fork` or from C, as uWSGI
//! does) the child starts from a fresh queue, installed by a
//! `pthread_atfork` handler: the parent's forwarder does not exist there, and
//! the old queue's lock may have been held at the moment of the fork.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

/// The Python logger at the root of everything this package logs.
const ROOT: &str = "jwtwarden";
/// Records waiting for the forwarder; more are dropped and counted.
const QUEUE_CAP: usize = 10_000;
/// Records buffered by one thread during one call; more are dropped.
const LOCAL_CAP: usize = 1_000;

struct Rec {
    level: Level,
    logger: String,
    message: String,
    file: Option<&'static str>,
    line: u32,
}

impl Rec {
    fn new(r: &Record<'_>) -> Rec {
        Rec {
            level: r.level(),
            logger: logger_name(r.target()),
            message: r.args().to_string(),
            file: r.file_static(),
            line: r.line().unwrap_or(0),
        }
    }
}

/// `jwtwarden::issuer` → `jwtwarden.issuer`; another crate's target `ureq::x`
/// → `jwtwarden.deps.ureq`.
fn logger_name(target: &str) -> String {
    if target == ROOT || target.starts_with("jwtwarden::") {
        target.replace("::", ".")
    } else {
        let krate = target.split("::").next().unwrap_or(target);
        format!("{ROOT}.deps.{krate}")
    }
}

fn levelno(level: Level) -> u32 {
    match level {
        Level::Error => 40,
        Level::Warn => 30,
        Level::Info => 20,
        Level::Debug => 10,
        Level::Trace => 5,
    }
}

thread_local! {
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    static LOCAL: RefCell<Vec<Rec>> = const { RefCell::new(Vec::new()) };
}

/// Marks the current thread as inside an engine call made by a Python thread.
pub(crate) struct CallScope(bool);

impl CallScope {
    pub(crate) fn enter() -> CallScope {
        CallScope(IN_CALL.with(|c| c.replace(true)))
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        IN_CALL.with(|c| c.set(self.0));
    }
}

/// Emit the records this thread buffered during the engine call that just
/// ended: here if this thread cannot be ended by interpreter shutdown, else
/// through the forwarder.
pub(crate) fn flush_local(py: Python<'_>) {
    let records = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut *l))
        }
    });
    let Some(records) = records else { return };
    if survives_shutdown(py) {
        for rec in &records {
            emit(py, rec);
        }
    } else {
        for rec in records {
            enqueue(rec);
        }
    }
}

static THREADING: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// True on the main thread and on non-daemon `threading.Thread`s: the
/// interpreter waits for those before it starts to shut down.
fn survives_shutdown(py: Python<'_>) -> bool {
    let check = || -> PyResult<bool> {
        let threading = THREADING
            .get_or_try_init(py, || Ok::<_, PyErr>(py.import("threading")?.unbind()))?
            .bind(py);
        let current = threading.call_method0("current_thread")?;
        Ok(!current.getattr("daemon")?.is_truthy()?)
    };
    check().unwrap_or(false)
}

/// Queue a record for the forwarder thread (started on first use).
fn enqueue(rec: Rec) {
    let q = queue();
    let mut s = q.lock();
    if s.shut_down {
        return;
    }
    if s.items.len() >= QUEUE_CAP {
        s.dropped += 1;
        return;
    }
    s.items.push_back(rec);
    if !s.forwarder_running {
        let spawned = std::thread::Builder::new()
            .name("jwtwarden-log".into())
            .spawn(move || forward(q));
        s.forwarder_running = spawned.is_ok();
    }
    q.cv.notify_all();
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Rec>,
    dropped: u64,
    forwarder_running: bool,
    forwarder_attached: bool,
    shut_down: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

impl Queue {
    fn leak_new() -> *mut Queue {
        Box::into_raw(Box::new(Queue {
            state: Mutex::new(QueueState::default()),
            cv: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, QueueState>) -> MutexGuard<'a, QueueState> {
        self.cv.wait(g).unwrap_or_else(|p| p.into_inner())
    }
}

/// The queue of this process. Replaced (the old one leaked, a few bytes) in a
/// forked child, never freed, so a `&'static` to it is always valid.
static CURRENT: AtomicPtr<Queue> = AtomicPtr::new(std::ptr::null_mut());

fn queue() -> &'static Queue {
    let mut p = CURRENT.load(Ordering::Acquire);
    if p.is_null() {
        let fresh = Queue::leak_new();
        p = match CURRENT.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` came from Box::into_raw above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
    }
    // SAFETY: queues are leaked, never freed, so the pointer stays valid.
    unsafe { &*p }
}

struct Bridge;

impl Log for Bridge {
    /// The engine's records at the `jwtwarden` logger's level; other crates'
    /// (HTTP, TLS) only from WARN up.
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
            && (m.level() <= Level::Warn || m.target() == ROOT || m.target().starts_with("jwtwarden::"))
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if IN_CALL.with(Cell::get) {
            LOCAL.with(|l| {
                let mut l = l.borrow_mut();
                if l.len() < LOCAL_CAP {
                    l.push(Rec::new(r));
                }
            });
            return;
        }
        enqueue(Rec::new(r));
    }

    fn flush(&self) {}
}

/// The forwarder thread: hands queued records to `logging`, one at a time,
/// so that shutdown waits for one record at most.
fn forward(q: &'static Queue) {
    loop {
        let dropped = {
            let mut s = q.lock();
            loop {
                if s.shut_down {
                    s.forwarder_running = false;
                    q.cv.notify_all();
                    return;
                }
                if !s.items.is_empty() {
                    break;
                }
                s = q.wait(s);
            }
            s.forwarder_attached = true;
            std::mem::take(&mut s.dropped)
        };
        // Holding no lock while attaching; `try_attach` declines during
        // finalization (and `_shutdown_logging` makes sure we never get there).
        let _ = Python::try_attach(|py| {
            emit_dropped(py, dropped);
            loop {
                let rec = {
                    let mut s = q.lock();
                    if s.shut_down {
                        break;
                    }
                    match s.items.pop_front() {
                        Some(rec) => rec,
                        None => break,
                    }
                };
                emit(py, &rec);
            }
        });
        let mut s = q.lock();
        s.forwarder_attached = false;
        q.cv.notify_all();
    }
}

fn emit_dropped(py: Python<'_>, dropped: u64) {
    if dropped > 0 {
        emit(
            py,
            &Rec {
                level: Level::Warn,
                logger: ROOT.into(),
                message: format!("{dropped} log records from background threads were dropped (queue full, or exiting)"),
                file: None,
                line: 0,
            },
        );
    }
}

static LOGGING: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn logging(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    LOGGING
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("logging")?.unbind()))
        .map(|m| m.bind(py))
}

/// Hand one record to `logging`, with the Rust file and line. Errors in
/// handlers are `logging`'s business; one that escapes is discarded.
fn emit(py: Python<'_>, rec: &Rec) {
    let result = (|| -> PyResult<()> {
        let logger = logging(py)?.call_method1("getLogger", (rec.logger.as_str(),))?;
        let level = levelno(rec.level);
        if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
            return Ok(());
        }
        let record = logger.call_method1(
            "makeRecord",
            (
                rec.logger.as_str(),
                level,
                rec.file.unwrap_or("<rust>"),
                rec.line,
                rec.message.as_str(),
                (),
                py.None(),
            ),
        )?;
        logger.call_method1("handle", (record,))?;
        Ok(())
    })();
    drop(result);
}

/// Install the bridge as the process's `log` logger (once) and set its level.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    // Fails only if a logger is already installed in this module's copy of
    // `log`, i.e. on a second import of the extension in one process.
    if log::set_boxed_logger(Box::new(Bridge)).is_ok() {
        queue();
        // SAFETY: the handler only allocates a new queue and stores a pointer.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) };
        if rc != 0 {
            log::warn!("pthread_atfork failed ({rc}): log records of a forked child's refresher may be lost");
        }
    }
    sync_log_level(py)
}

/// Read the effective level of the `jwtwarden` Python logger and stop the
/// engine from producing records below it. Done when the package is imported
/// and when a `Verifier` is created; call it after lowering the level later
/// (raising it needs nothing: `logging` filters as usual).
#[pyfunction]
pub(crate) fn sync_log_level(py: Python<'_>) -> PyResult<()> {
    let level: u32 = logging(py)?
        .call_method1("getLogger", (ROOT,))?
        .call_method0("getEffectiveLevel")?
        .extract()?;
    let filter = match level {
        0..=5 => LevelFilter::Trace,
        6..=10 => LevelFilter::Debug,
        11..=20 => LevelFilter::Info,
        21..=30 => LevelFilter::Warn,
        31..=40 => LevelFilter::Error,
        _ => LevelFilter::Off,
    };
    log::set_max_level(filter);
    Ok(())
}

/// `pthread_atfork` child handler: the child gets a fresh queue with no
/// forwarder (one starts on the next background record). Allocating here is
/// fine with glibc and musl, whose `fork` leaves `malloc` usable in the child.
extern "C" fn in_forked_child() {
    CURRENT.store(Queue::leak_new(), Ordering::Release);
}

/// How long the `atexit` hook spends emitting records still queued; the
/// rest are counted as dropped, so a slow handler cannot hold up exit.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// `atexit` hook: tell engine calls still running on daemon threads not to
/// take the GIL back (see `call::detached`), stop the forwarder, wait until it has let go of the
/// interpreter (it finishes the one record it is emitting), and emit what is
/// still queued on this thread, for up to [`SHUTDOWN_DRAIN`].
#[pyfunction]
pub(crate) fn _shutdown_logging(py: Python<'_>) {
    crate::call::interpreter_exiting();
    let q = queue();
    let (rest, dropped) = py.detach(|| {
        let mut s = q.lock();
        s.shut_down = true;
        q.cv.notify_all();
        while s.forwarder_attached {
            s = q.wait(s);
        }
        (std::mem::take(&mut s.items), std::mem::take(&mut s.dropped))
    });
    let deadline = std::time::Instant::now() + SHUTDOWN_DRAIN;
    let mut rest = rest.into_iter();
    for rec in rest.by_ref() {
        emit(py, &rec);
        if std::time::Instant::now() >= deadline {
            break;
        }
    }
    emit_dropped(py, dropped + rest.len() as u64);
}
