package jwtwarden

// #include "jwtwarden.h"
import "C"

import "fmt"

// Kind is a stable error code, the same number in Rust, C, Python and Go.
// Every Kind is also an error, so it works as a sentinel with errors.Is:
//
//	if errors.Is(err, jwtwarden.ErrExpired) { ... }
type Kind uint32

// The error kinds. The numbers come from jwtwarden.h (generated from the
// Rust core), never retyped by hand.
const (
	ErrTokenTooLarge          Kind = C.JWTWARDEN_RESULT_TOKEN_TOO_LARGE
	ErrMalformedToken         Kind = C.JWTWARDEN_RESULT_MALFORMED_TOKEN
	ErrInvalidBase64          Kind = C.JWTWARDEN_RESULT_INVALID_BASE64
	ErrInvalidHeader          Kind = C.JWTWARDEN_RESULT_INVALID_HEADER
	ErrInvalidPayload         Kind = C.JWTWARDEN_RESULT_INVALID_PAYLOAD
	ErrAlgorithmNotAllowed    Kind = C.JWTWARDEN_RESULT_ALGORITHM_NOT_ALLOWED
	ErrUnsupportedCritical    Kind = C.JWTWARDEN_RESULT_UNSUPPORTED_CRITICAL
	ErrInvalidSignature       Kind = C.JWTWARDEN_RESULT_INVALID_SIGNATURE
	ErrUnknownKid             Kind = C.JWTWARDEN_RESULT_UNKNOWN_KID
	ErrMissingKid             Kind = C.JWTWARDEN_RESULT_MISSING_KID
	ErrKeyAlgorithmMismatch   Kind = C.JWTWARDEN_RESULT_KEY_ALGORITHM_MISMATCH
	ErrExpired                Kind = C.JWTWARDEN_RESULT_EXPIRED
	ErrNotYetValid            Kind = C.JWTWARDEN_RESULT_NOT_YET_VALID
	ErrInvalidIssuer          Kind = C.JWTWARDEN_RESULT_INVALID_ISSUER
	ErrUnknownIssuer          Kind = C.JWTWARDEN_RESULT_UNKNOWN_ISSUER
	ErrInvalidAudience        Kind = C.JWTWARDEN_RESULT_INVALID_AUDIENCE
	ErrMissingRequiredClaim   Kind = C.JWTWARDEN_RESULT_MISSING_REQUIRED_CLAIM
	ErrInvalidType            Kind = C.JWTWARDEN_RESULT_INVALID_TYPE
	ErrRevoked                Kind = C.JWTWARDEN_RESULT_REVOKED
	ErrKeyRevoked             Kind = C.JWTWARDEN_RESULT_KEY_REVOKED
	ErrTokenLifetimeExceeded  Kind = C.JWTWARDEN_RESULT_TOKEN_LIFETIME_EXCEEDED
	ErrSuspended              Kind = C.JWTWARDEN_RESULT_SUSPENDED
	ErrStatusURINotAllowed    Kind = C.JWTWARDEN_RESULT_STATUS_URI_NOT_ALLOWED
	ErrStatusIndexOutOfRange  Kind = C.JWTWARDEN_RESULT_STATUS_INDEX_OUT_OF_RANGE
	ErrStatusNotValid         Kind = C.JWTWARDEN_RESULT_STATUS_NOT_VALID
	ErrStatusMissing          Kind = C.JWTWARDEN_RESULT_STATUS_MISSING
	ErrTenantNotAllowed       Kind = C.JWTWARDEN_RESULT_TENANT_NOT_ALLOWED
	ErrKeysUnavailable        Kind = C.JWTWARDEN_RESULT_KEYS_UNAVAILABLE
	ErrKeysStale              Kind = C.JWTWARDEN_RESULT_KEYS_STALE
	ErrRevocationsStale       Kind = C.JWTWARDEN_RESULT_REVOCATIONS_STALE
	ErrStatusListUnavailable  Kind = C.JWTWARDEN_RESULT_STATUS_LIST_UNAVAILABLE
	ErrStatusListStale        Kind = C.JWTWARDEN_RESULT_STATUS_LIST_STALE
	ErrTenantBudgetExhausted  Kind = C.JWTWARDEN_RESULT_TENANT_BUDGET_EXHAUSTED
	ErrTenantUnavailable      Kind = C.JWTWARDEN_RESULT_TENANT_UNAVAILABLE
	ErrInvalidConfig          Kind = C.JWTWARDEN_RESULT_INVALID_CONFIG
	ErrInvalidArgument        Kind = C.JWTWARDEN_RESULT_INVALID_ARGUMENT
	ErrRevocationListFull     Kind = C.JWTWARDEN_RESULT_REVOCATION_LIST_FULL
	ErrNullParameter          Kind = C.JWTWARDEN_RESULT_NULL_PARAMETER
	ErrRevocationNotPersisted Kind = C.JWTWARDEN_RESULT_REVOCATION_NOT_PERSISTED
	ErrInternal               Kind = C.JWTWARDEN_RESULT_INTERNAL
	ErrPanic                  Kind = C.JWTWARDEN_RESULT_PANIC
)

// Kinds lists every Kind, in code order.
var Kinds = []Kind{
	ErrTokenTooLarge, ErrMalformedToken, ErrInvalidBase64, ErrInvalidHeader, ErrInvalidPayload,
	ErrAlgorithmNotAllowed, ErrUnsupportedCritical,
	ErrInvalidSignature, ErrUnknownKid, ErrMissingKid, ErrKeyAlgorithmMismatch,
	ErrExpired, ErrNotYetValid, ErrInvalidIssuer, ErrUnknownIssuer, ErrInvalidAudience,
	ErrMissingRequiredClaim, ErrInvalidType, ErrRevoked, ErrKeyRevoked, ErrTokenLifetimeExceeded,
	ErrSuspended, ErrStatusURINotAllowed, ErrStatusIndexOutOfRange, ErrStatusNotValid, ErrStatusMissing,
	ErrTenantNotAllowed,
	ErrKeysUnavailable, ErrKeysStale, ErrRevocationsStale, ErrStatusListUnavailable, ErrStatusListStale,
	ErrTenantBudgetExhausted, ErrTenantUnavailable,
	ErrInvalidConfig, ErrInvalidArgument, ErrRevocationListFull, ErrNullParameter, ErrRevocationNotPersisted,
	ErrInternal, ErrPanic,
}

// Code is the stable numeric code.
func (k Kind) Code() uint32 { return uint32(k) }

// String is the stable snake_case name ("expired"), as in metrics and logs.
func (k Kind) String() string { return resultName(uint32(k)) }

// Error makes a Kind usable as a sentinel error. It is the bare name, like
// String, so a Kind prints the same with %s and %v.
func (k Kind) Error() string { return k.String() }

// Category is the broad reason of the kind.
func (k Kind) Category() Category { return categoryOf(uint32(k)) }

// Category groups kinds by their code range. Every Category is also an
// error, so it works as a sentinel with errors.Is:
//
//	if errors.Is(err, jwtwarden.ErrCategoryPolicy) { ... }
type Category uint32

// The categories (numbers from jwtwarden.h).
const (
	// ErrCategoryMalformed: 1xx, the token is not well formed.
	ErrCategoryMalformed Category = C.JWTWARDEN_CATEGORY_MALFORMED
	// ErrCategoryVerification: 2xx, the signature could not be verified (bad signature, unknown kid).
	ErrCategoryVerification Category = C.JWTWARDEN_CATEGORY_VERIFICATION
	// ErrCategoryPolicy: 3xx, authentic but denied by policy (expired, audience, issuer, revoked).
	ErrCategoryPolicy Category = C.JWTWARDEN_CATEGORY_POLICY
	// ErrCategoryKeysUnavailable: 4xx, the issuer's keys (or the fleet's
	// revocations, ErrRevocationsStale) are unavailable or too stale.
	ErrCategoryKeysUnavailable Category = C.JWTWARDEN_CATEGORY_KEYS_UNAVAILABLE
	// ErrCategoryUsage: 5xx, the caller or its configuration is at fault.
	ErrCategoryUsage Category = C.JWTWARDEN_CATEGORY_USAGE
	// ErrCategoryInternal: 9xx, an internal failure.
	ErrCategoryInternal Category = C.JWTWARDEN_CATEGORY_INTERNAL
)

// String is the stable name ("policy").
func (c Category) String() string { return categoryName(c) }

// Error makes a Category usable as a sentinel error. It is the bare name,
// like String.
func (c Category) Error() string { return c.String() }

// Error is what every failing call returns. Use errors.As to get it, or
// errors.Is with a Kind or Category sentinel to test it.
type Error struct {
	// Code is the stable numeric code (Kind as a number).
	Code uint32
	// Kind is the stable error kind.
	Kind Kind
	// Category is the broad reason.
	Category Category
	// Message is for people; it may change between versions. Match on Kind.
	Message string
}

func newError(code uint32, message string) *Error {
	if message == "" {
		message = resultName(code)
	}
	return &Error{Code: code, Kind: Kind(code), Category: categoryOf(code), Message: message}
}

// Error formats the error as "jwtwarden: expired (300): token expired at ...".
func (e *Error) Error() string {
	return fmt.Sprintf("jwtwarden: %s (%d): %s", e.Kind, e.Code, e.Message)
}

// Is reports whether target is this error's Kind or Category (or an *Error
// of the same Kind).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Kind:
		return e.Kind == t
	case Category:
		return e.Category == t
	case *Error:
		return t != nil && e.Kind == t.Kind
	}
	return false
}

// IsMalformed reports a 1xx error: the input is not a well-formed token.
func (e *Error) IsMalformed() bool { return e.Category == ErrCategoryMalformed }

// IsVerificationFailure reports a 2xx error: bad signature, unknown or mismatched key.
func (e *Error) IsVerificationFailure() bool { return e.Category == ErrCategoryVerification }

// IsPolicyDenial reports a 3xx error: expired, audience, issuer, revoked...
func (e *Error) IsPolicyDenial() bool { return e.Category == ErrCategoryPolicy }

// IsKeysUnavailable reports a 4xx error: the issuer's keys cannot be trusted right now.
func (e *Error) IsKeysUnavailable() bool { return e.Category == ErrCategoryKeysUnavailable }
