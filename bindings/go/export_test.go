package jwtwarden

// Internals the external tests check against tests/http_contract.json.
var (
	StatusByCategory = statusByCategory
	RetryAfter       = retryAfter
)
