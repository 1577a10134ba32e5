package main

import (
	"cmp"
	"slices"
	"time"
)

// deadIndex is what dead retry keeps of a tenant's dead letters, handed
// over in stream order (add): the latest of each request id, each that
// does not count as one of its request id's (ofRequest), the highest
// attempt of each request id and, for --seq, the dead letter named.
//
// Only the dead letters that may be retried keep their body and headers:
// the latest of a request id, with the code asked for (any without
// --code), and with --seq of the request id named. The others are kept
// without (light): an older dead letter of a request id is retried from
// the latest, and one that is not of a request is refused before its
// body is read. A stream of hundreds of thousands of dead letters, bodies
// of up to 64 KiB, is not held whole for the few retried.
type deadIndex struct {
	seq   uint64     // --seq; 0 with --all
	codes codeFilter // --code; none for any

	latest map[string]deadLetter // by request id
	// others are the dead letters that do not count as one of their
	// request id's (no request id, or a body that fails the request's
	// checks), each retried (refused) on its own; only with --all. As the
	// worker keeps a malformed copy of a request apart from the request,
	// such a copy is not the request's latest dead letter, which would
	// be retried in its place.
	others []deadLetter
	// highest is, per request id, the highest attempt of its dead
	// letters. The latest in stream order need not hold it: a request
	// failed at attempt 2 may have been dead-lettered again at attempt 1
	// afterwards (a copy sent anew that failed its checks, or, by workers
	// before this release, a failure answered again from the ledger). A
	// retry is one more than the highest: the latest's attempt + 1 may
	// have been published before, and the stream would drop it as a
	// repeat.
	highest map[string]int
	// first is, per request id, when its first dead letter that counts
	// as one of its id's was stored.
	first map[string]time.Time
	named *deadLetter // the dead letter of --seq once read, light
}

func newDeadIndex(seq uint64, codes codeFilter) *deadIndex {
	return &deadIndex{seq: seq, codes: codes, latest: map[string]deadLetter{}, highest: map[string]int{}, first: map[string]time.Time{}}
}

// add takes the next dead letter in stream order.
func (x *deadIndex) add(d deadLetter) {
	if d.RequestID != "" {
		x.highest[d.RequestID] = max(x.highest[d.RequestID], d.Attempt)
	}
	if x.seq != 0 && d.Seq == x.seq {
		named := d.light()
		x.named = &named
	}
	if !x.mayRetry(d) {
		d = d.light()
	}
	switch {
	case ofRequest(d):
		if _, ok := x.first[d.RequestID]; !ok {
			x.first[d.RequestID] = d.Stored
		}
		x.latest[d.RequestID] = d
	case x.seq == 0:
		x.others = append(x.others, d)
	}
}

// mayRetry says whether d, were it its request id's latest, may be
// retried: it keeps its body and headers.
func (x *deadIndex) mayRetry(d deadLetter) bool {
	switch {
	case !ofRequest(d) || !x.withCode(d):
		return false
	case x.seq == 0:
		return true
	}
	// With --seq, a dead letter before the one named is not its request
	// id's latest: the one named, or one after it, is.
	return x.named != nil && ofRequest(*x.named) && x.named.RequestID == d.RequestID
}

func (x *deadIndex) withCode(d deadLetter) bool { return x.codes.match(d.Code) }

// picked is, with --all, the dead letters to retry, in stream order: the
// latest of each request id and each that does not count as one of its
// request id's, with the code asked for.
func (x *deadIndex) picked() []deadLetter {
	out := slices.DeleteFunc(slices.Clone(x.others), func(d deadLetter) bool { return !x.withCode(d) })
	for _, d := range x.latest {
		if x.withCode(d) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b deadLetter) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// latestOf is the latest dead letter of d's request id; d itself when it
// does not count as one of its id's.
func (x *deadIndex) latestOf(d deadLetter) deadLetter {
	if l, ok := x.latest[d.RequestID]; ok && ofRequest(d) {
		return l
	}
	return d
}

// light is d without what only its retry reads: its body, headers and
// message.
func (d deadLetter) light() deadLetter {
	d.body, d.header, d.Message = nil, nil, ""
	return d
}
