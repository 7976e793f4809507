package jwtwarden

// Internals the external tests check against tests/http_contract.json.
var (
	StatusByCategory = statusByCategory
	RetryAfter       = retryAfter
)

// MemoInOneSlot makes every result of v share one memo slot, so each new
// result evicts (and releases) the last: the worst case of the memo.
func MemoInOneSlot(v *Verifier) { v.memo.mask = 0 }

// MemoSlot is the memo slot of a result whose claims JSON is at address key.
var MemoSlot = memoSlot
