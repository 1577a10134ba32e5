package queue

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"
)

// BucketPresence is where each worker replica announces the tenants it
// serves. It is the worker's own, not part of the contract.
const BucketPresence = "MDE_OFFBOARD_REPLICAS"

// Presence defaults.
const (
	// PresenceBeat is how often a replica announces itself.
	PresenceBeat = 5 * time.Second
	// PresenceTTL is how long an announcement counts: three beats, so one
	// lost beat does not make a live replica look dead.
	PresenceTTL = 3 * PresenceBeat
)

// Presence returns the definition of the presence bucket. Old entries
// leave on their own; PresenceTTL decides liveness, not the bucket's TTL.
func (s Settings) Presence() jetstream.KeyValueConfig {
	s = s.WithDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      BucketPresence,
		Description: "worker replicas and the tenants each serves, announced every few seconds",
		History:     1,
		TTL:         time.Hour,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}
}

// announcement is one replica's entry.
type announcement struct {
	Tenants []string `json:"tenants"`
	// Apps holds, for each tenant, a digest of the Entra tenant and
	// application it names (AppDigest): two replicas whose files give one
	// tenant name to different ones would offboard in the wrong tenant
	// for each other's requests. Empty from a release before it.
	Apps map[string]string `json:"apps,omitempty"`
	// Guards holds, for each tenant, a digest of the guards the replica
	// applies to it (config.GuardsDigest): a replica whose guards differ
	// from another's offboards devices the other protects. Empty from a
	// release before it.
	Guards map[string]string `json:"guards,omitempty"`
	// Instance tells this process's announcements from those of another
	// process started with the same replica id by mistake.
	Instance string `json:"instance,omitempty"`
	// Leaving says the replica stops: it takes no more requests and
	// finishes those under way. The others take its tenants at once, and
	// count it as alive and serving them until it withdraws.
	Leaving bool `json:"leaving,omitempty"`
	// Aside says the replica makes no call now (its clock is off the
	// NATS server's): the others that serve its tenants take them, and
	// count it as alive and serving them meanwhile.
	Aside bool `json:"aside,omitempty"`
}

// announcementHeaders is the room kept in a message for the headers of
// an announcement's withdrawal (deleteAt) and the server's count of them.
const announcementHeaders = 1 << 10

// maxAnnouncement bounds an announcement read uncompressed: far more than
// the most tenants a replica serves name.
const maxAnnouncement = 64 << 20

// encodeAnnouncement is a's JSON, or, when that takes more than room
// bytes (thousands of tenants of long names on a server of a small
// max_payload, which would refuse it), that JSON compressed with gzip,
// which a reader tells by its first bytes. A replica of an earlier
// release cannot read the compressed form; it could not have announced
// so many tenants either.
func encodeAnnouncement(a announcement, room int) ([]byte, error) {
	data, err := json.Marshal(a)
	if err != nil || len(data) <= room {
		return data, err
	}
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if _, err := z.Write(data); err != nil {
		return nil, err
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// decodeAnnouncement reads an announcement, compressed or not
// (encodeAnnouncement).
func decodeAnnouncement(data []byte, a *announcement) error {
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) { // gzip's magic; JSON starts with '{'
		return json.Unmarshal(data, a)
	}
	z, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	plain, err := io.ReadAll(io.LimitReader(z, maxAnnouncement+1))
	if err != nil {
		return err
	}
	if len(plain) > maxAnnouncement {
		return fmt.Errorf("announcement over %d bytes uncompressed", maxAnnouncement)
	}
	return json.Unmarshal(plain, a)
}

// Presence keeps this replica's announcement fresh and follows the
// others', so that a request of a tenant this replica does not serve is
// answered unknown_tenant only when no live replica serves it. During a
// rolling update, replicas with different tenants files then agree.
//
// It also spreads the tenants across the live replicas (Assigned): each
// tenant goes to one of the replicas that serve it, by rendezvous hashing,
// so a tenant's calls come from one replica at a time and a replica that
// leaves or dies moves only its own tenants.
type Presence struct {
	kv       jetstream.KeyValue
	js       jetstream.JetStream // withdraws the announcement (deleteAt)
	nc       *nats.Conn          // its reconnections tell a watch that may have lost its consumer (ConnMark)
	id       string
	instance string // this process's own mark in its announcements
	tenants  []string
	apps     map[string]string // tenant: AppDigest
	guards   map[string]string // tenant: guards digest
	clock    clockwork.Clock
	log      *zap.Logger
	beat     time.Duration // how often this replica announces itself
	ttl      time.Duration // how long another's announcement counts
	// forget is how long after it was read another's entry is dropped
	// from the view: by then the bucket's TTL has dropped it from the
	// bucket, which no watch tells (0: kept).
	forget time.Duration
	// remake makes the bucket again when it is found missing (an
	// operator deleted it, a store was restored); nil: it is left to the
	// operator (--no-setup).
	remake func(context.Context) error

	// announcing makes announcements one at a time: a beat's, read before
	// Leave, stored after Leave's would say the replica does not stop.
	announcing sync.Mutex

	mu     sync.Mutex
	others map[string]seen // by replica id, this one's not among them
	// gone holds, by replica id, the last announcement of each replica
	// that withdrew it (a clean stop), read at the withdrawal: its
	// tenants count as served for ttl more (Serves). A replica restarted,
	// the only one whose tenants file names a tenant, announces itself
	// again within that time; meanwhile the others leave that tenant's
	// requests waiting rather than answer them unknown_tenant.
	gone    map[string]seen
	live    []string  // the other replicas live at the last look, sorted
	twinned []string  // the other replicas with two processes live under their id (seen.twins) at the last look, sorted
	moved   bool      // a replica's entry changed or left since the last look
	echo    time.Time // when the watch last brought this process's own announcement
	putRev  uint64    // the revision of this process's last announcement stored
	echoRev uint64    // the revision of its last announcement the watch brought back
	stored  time.Time // when this process's last announcement was stored
	// putting says that an announcement is on its way to the bucket: the
	// others may read it before its store is acknowledged here.
	putting bool
	// unstored says that the last announcement failed (NATS away from
	// this replica, a permission withdrawn): the next is not taken to
	// reach the others before it is answered.
	unstored bool
	// ahead is how far this clock runs ahead of the NATS server's (behind:
	// negative), from this process's last announcement: when it was
	// stored by each. A withdrawal read without its announcement is
	// dated by the server (withdrawalRead).
	ahead      time.Duration
	aheadKnown bool // ahead was measured
	// made is this process's last announcement made: its withdrawal
	// carries it (deleteAt).
	made []byte
	// yield, while this process's announcement has not been stored for
	// ttl (the others take this replica for gone, and its tenants), lists
	// the other replicas live now: each tenant one of them serves is left
	// to it.
	yield []string
	// regained is when the view last became current after it was not
	// (or first was): the others' announcements count from then at the
	// earliest, as time spent behind says nothing of them.
	regained time.Time
	behind   bool          // the view was not Known at the last report (reportKnown)
	twin     time.Time     // when another process's announcement under this id was last reported
	current  chan struct{} // closed once the watch has read every entry
	changed  chan struct{} // closed, and replaced, when the live replicas change

	// twinSeen is when another process's announcement under this id was
	// last read, twinInst that process and twinTenants its tenants.
	// Both rank alike for every tenant: of the two, the one with the
	// greater instance works the tenants both serve.
	twinSeen    time.Time
	twinInst    string
	twinTenants []string
	twinAhead   bool // at the last look, the tenants both serve were left to the other process
	twinLeaving bool // the other process under this id stops (announcement.Leaving)
	twinAside   bool // the other process under this id makes no call now (announcement.Aside)

	leaving bool // this replica stops (Leave)
	// aside says this replica makes no call now (PresenceOptions.Aside,
	// asked at the start and a few times a beat); asideNow asks.
	aside    bool
	asideNow func() bool
	// guardsWarned holds, by replica id and tenant, the guards digest of
	// another live replica that differs from this one's, once warned of:
	// a warning per change, not per beat.
	guardsWarned map[guardsOf]string
	// starting says this replica has been aside since its first
	// announcement and has made no call yet: the end of that is no
	// "again".
	starting bool
}

type seen struct {
	instance string // the process that announced itself (announcement.Instance)
	tenants  map[string]bool
	apps     map[string]string // announcement.Apps
	guards   map[string]string // announcement.Guards
	names    map[string]string // a tenant name by its AppDigest
	leaving  bool              // announcement.Leaving
	aside    bool              // announcement.Aside
	at       time.Time         // when this replica first read this revision of the entry
	// stored, for an entry the watch of this replica's start read, is
	// when the server stored it, by the server's clock (zero for any
	// other): stored long before, it stops counting in the assignment
	// sooner (Presence.staleLocked).
	stored time.Time
	rev    uint64 // the entry's revision
	// twin is the last announcement of another process under this
	// replica id, read before this one; twins says the two took turns
	// (the other announced after this one before): two processes alive
	// under one id, started so by mistake, not one restarted under its
	// name. Each overwrites the other's entry at its beat.
	twin  *seen
	twins bool
}

// PresenceOptions configure a replica's presence.
type PresenceOptions struct {
	// ID must be unique among replicas (a host name and process id, a
	// pod name).
	ID      string
	Tenants []string
	// Apps is each tenant's AppDigest, announced with the tenants.
	Apps map[string]string
	// Guards is each tenant's guards digest (config.GuardsDigest),
	// announced with the tenants.
	Guards map[string]string
	// Beat is how often the replica announces itself (0: PresenceBeat);
	// an announcement counts for three beats, so every replica must use
	// the same beat.
	Beat time.Duration
	// Bucket is the bucket's definition (Settings.Presence): when the
	// bucket is found missing while the replica runs, it is made again,
	// unless NoSetup.
	Bucket  jetstream.KeyValueConfig
	NoSetup bool
	Clock   clockwork.Clock
	Logger  *zap.Logger
	// Aside, asked at the start and a few times a beat, says whether
	// this replica can make no call now (its clock is off the NATS
	// server's, its quota journal is not read yet; nil: never). Its
	// tenants then go to the other live replicas that serve them, and
	// come back once it says no; those no other replica serves stay.
	Aside func() bool
}

// NewPresence prepares this replica's presence.
func NewPresence(ctx context.Context, js jetstream.JetStream, o PresenceOptions) (*Presence, error) {
	kv, err := js.KeyValue(ctx, BucketPresence)
	if err != nil {
		return nil, fmt.Errorf("presence bucket %s: %w", BucketPresence, err)
	}
	beat := o.Beat
	if beat <= 0 {
		beat = PresenceBeat
	}
	p := &Presence{
		kv: kv, js: js, nc: js.Conn(), id: o.ID, instance: nuid.Next(), tenants: slices.Clone(o.Tenants), apps: maps.Clone(o.Apps), guards: maps.Clone(o.Guards), clock: o.Clock, log: o.Logger.Named("presence"),
		beat: beat, ttl: 3 * beat, forget: forgetAfter(o.Bucket.TTL, beat),
		others: map[string]seen{}, gone: map[string]seen{}, current: make(chan struct{}), changed: make(chan struct{}), asideNow: o.Aside,
	}
	if !o.NoSetup {
		p.remake = func(ctx context.Context) error {
			// Made only when it is not there: an announcement that
			// failed as if it were gone (no responders during a leader
			// election) must not set an existing bucket to this
			// replica's settings, its replicas lowered with them.
			_, err := js.CreateKeyValue(ctx, o.Bucket)
			if errors.Is(err, jetstream.ErrBucketExists) {
				return nil
			}
			return err
		}
	}
	return p, nil
}

// forgetAfter is how long after it was read an entry of the bucket whose
// TTL is ttl is kept in the view: the TTL, and three beats for the
// server's expiry to run. An entry read again by a new watch while still
// in the bucket would count as a sign of life. 0 (no TTL): kept.
func forgetAfter(ttl, beat time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return ttl + 3*beat
}

// Run announces this replica every PresenceBeat and follows the others
// until ctx ends; then it withdraws the announcement. When its watch ends
// (the bucket was deleted, a reset failed), it watches again, making the
// bucket again if it is missing; meanwhile its view is not Known.
func (p *Presence) Run(ctx context.Context) error {
	// Stopped before it began (the worker stopped while it started): no
	// failure, and an announcement that may have gone out is withdrawn.
	started := func(err error) error {
		if ctx.Err() == nil {
			return err
		}
		p.withdraw()
		return nil
	}
	p.asideFromTheStart()
	if err := p.announce(ctx); err != nil {
		return started(err)
	}
	p.measureAhead(ctx)
	conn := MarkConn(p.nc)
	w, err := p.kv.WatchAll(ctx)
	if err != nil {
		return started(fmt.Errorf("watch %s: %w", BucketPresence, err))
	}
	beat := p.clock.NewTicker(p.beat)
	defer beat.Stop()
	// Replicas that die do not say so: look for expired announcements a
	// few times per beat.
	expiry := p.clock.NewTicker(p.beat / 4)
	defer expiry.Stop()
	for {
		var updates <-chan jetstream.KeyValueEntry
		if w != nil {
			updates = w.Updates()
		}
		select {
		case <-ctx.Done():
			if w != nil {
				_ = w.Stop()
			}
			p.withdraw()
			return nil
		case e, ok := <-updates:
			if !ok {
				p.log.Warn("presence watch ended: watching again")
				_ = w.Stop()
				w = nil
				continue
			}
			p.apply(e)
		case <-beat.Chan():
			p.lookAside()
			if err := p.announce(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("announce", zap.Error(err))
			}
			if w != nil && (p.blind() || conn.Moved()) {
				// The watch brings nothing, not even this replica's own
				// announcements: stuck (a bucket made again under it
				// starts its sequence anew); or its connection was made
				// again (ConnMark). A new one reads every entry.
				_ = w.Stop()
				w = nil
			}
			if w == nil {
				conn = MarkConn(p.nc)
				w = p.watchAgain(ctx)
			}
		case <-expiry.Chan():
			p.lookAgain(ctx)
		}
	}
}

// asideFromTheStart asks, before the first announcement, whether this
// replica can make calls: one that cannot yet (its quota journal not
// read) says so then, and takes no tenant from the others, to hand it
// back when it can.
func (p *Presence) asideFromTheStart() {
	if p.asideNow == nil {
		return
	}
	aside := p.asideNow()
	p.mu.Lock()
	p.aside, p.starting = aside, aside
	p.mu.Unlock()
}

// lookAgain looks for expired announcements, and whether this replica
// can make calls now: a change is told at once, not at the next beat, as
// the tenants of a replica that can call again wait for it.
func (p *Presence) lookAgain(ctx context.Context) {
	p.mu.Lock()
	p.look()
	p.reportKnownLocked()
	p.mu.Unlock()
	if p.lookAside() {
		if err := p.announce(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("announce", zap.Error(err))
		}
	}
}

// reportKnownLocked logs when the view falls behind and when it is
// current again. p.mu held.
func (p *Presence) reportKnownLocked() {
	select {
	case <-p.current:
	default:
		return // starting: Start waits for it
	}
	known := p.knownLocked(p.clock.Now())
	switch {
	case known && p.behind:
		p.log.Info("the view of the other replicas is current again")
	case !known && !p.behind:
		p.log.Warn("the view of the other replicas is behind (this replica's announcements do not come back): " +
			"requests of tenants not configured here wait, and no tenant moves, until it is current again")
	}
	p.behind = !known
}

// blind says whether the watch has brought none of this process's own
// announcements for three beats.
func (p *Presence) blind() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clock.Since(p.echo) >= 3*p.beat
}

// watchAgain starts a new watch after the last one ended; nil when it
// could not (the next beat tries again).
func (p *Presence) watchAgain(ctx context.Context) jetstream.KeyWatcher {
	w, err := p.kv.WatchAll(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("watch again", zap.Error(err))
		}
		return nil
	}
	p.log.Info("presence watched again")
	return w
}

func (p *Presence) announce(ctx context.Context) (err error) {
	p.announcing.Lock()
	defer p.announcing.Unlock()
	p.mu.Lock()
	leaving, aside := p.leaving, p.aside
	p.mu.Unlock()
	data, err := encodeAnnouncement(announcement{Tenants: p.tenants, Apps: p.apps, Guards: p.guards, Instance: p.instance, Leaving: leaving, Aside: aside},
		int(p.nc.MaxPayload())-announcementHeaders)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.made = data
	// The others leave this replica its tenants the moment they read the
	// announcement, which may come before its store is acknowledged
	// here: it stops leaving them to the others (yield) as it sends it,
	// so that the two overlap (the quota journal keeps that safe) rather
	// than leave a tenant unworked between them. Not after one failed:
	// each announcement of a replica that NATS does not answer would
	// take its tenants back from the others for as long as it waits for
	// its answer (its timeout, up to a beat), for as long as NATS does
	// not answer.
	p.putting = !p.unstored
	p.look()
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.putting, p.unstored = false, err != nil
		p.look()
		p.mu.Unlock()
	}()
	rev, err := p.kv.Put(ctx, p.id, data)
	if err != nil && p.remake != nil && bucketMissing(err) {
		p.log.Warn("presence bucket missing: making it again", zap.Error(err))
		if err := p.remake(ctx); err != nil {
			return fmt.Errorf("make bucket %s again: %w", BucketPresence, err)
		}
		rev, err = p.kv.Put(ctx, p.id, data)
	}
	if err == nil {
		p.mu.Lock()
		p.putRev, p.stored = rev, p.clock.Now()
		p.mu.Unlock()
	}
	return err
}

// measureAhead reads this process's announcement just stored, to learn
// how far this clock is from the server's (ahead) before the watch
// brings the withdrawals stored before this process started, which it
// reads first. Not read (NATS away): taken for none.
func (p *Presence) measureAhead(ctx context.Context) {
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	e, err := p.kv.Get(ctx, p.id)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.aheadOf(e.Revision(), e.Created())
}

// aheadOf records how far this clock is from the server's, from an entry
// of this process's read under its id: its last announcement (revision
// rev), stored at created by the server's clock. p.mu held.
func (p *Presence) aheadOf(rev uint64, created time.Time) {
	if rev == p.putRev && !created.IsZero() {
		p.ahead, p.aheadKnown = p.stored.Round(0).Sub(created), true
	}
}

// lookAside asks whether this replica can make calls now (asideNow), and
// when that changed, says so (changed): its assignment changes, and the
// next announcement tells the others.
func (p *Presence) lookAside() (changed bool) {
	if p.asideNow == nil {
		return false
	}
	aside := p.asideNow()
	p.mu.Lock()
	defer p.mu.Unlock()
	if aside == p.aside {
		return false
	}
	p.aside = aside
	p.look() // of two processes under this id, the tenants both serve go to the other one
	switch {
	case aside:
		p.log.Warn("this replica makes no call now: the other replicas that serve its tenants take them")
	case p.starting:
		// Every start: the quota journal read, calls may start.
		p.log.Info("this replica can make calls now: it takes its share of the tenants")
	default:
		p.log.Info("this replica makes calls again: it takes its tenants back")
	}
	p.starting = false
	close(p.changed)
	p.changed = make(chan struct{})
	return true
}

// bucketMissing says whether a write to a bucket failed because its
// stream is gone: no stream takes the subject.
func bucketMissing(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, nats.ErrNoResponders)
}

// Leave announces that this replica stops: it works no tenant from now
// on (Assigned says no, Changed is closed), and the other replicas take
// its tenants at once rather than when it withdraws, after its requests
// under way are finished. Until then they count it as alive and serving
// its tenants. Each beat after it announces the same.
func (p *Presence) Leave(ctx context.Context) error {
	p.mu.Lock()
	if !p.leaving {
		p.leaving = true
		close(p.changed)
		p.changed = make(chan struct{})
	}
	p.mu.Unlock()
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	return p.announce(ctx)
}

// withdraw deletes this replica's announcement, so others stop counting on
// it at once rather than after PresenceTTL; only while it is this
// process's last one: another process under the same id (restarted under
// its name before this one was done) may have announced since.
func (p *Presence) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.mu.Lock()
	rev := p.putRev
	twin := p.twinLiveLocked(p.clock.Now())
	p.mu.Unlock()
	if twin {
		// Another process under this id lives and serves its tenants:
		// deleted, the id would leave the others' views until that
		// process's next beat, and a tenant only it serves would be
		// answered unknown_tenant by them meanwhile. This process's
		// last announcement says it is leaving; the other's next beat
		// writes over it.
		p.log.Info("announcement not withdrawn: another process under this replica's id still announces itself")
		return
	}
	// With no put answered (rev 0), or a delete at the last one's
	// revision refused, a put of this process may have been stored
	// without its answer (cut off by the stop, or a beat's and Leave's at
	// once, whose revisions came back in the other order): the
	// announcement stored is read, and deleted if it is this process's.
	var err error
	if rev != 0 {
		err = p.deleteAt(ctx, rev)
	}
	if rev == 0 || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		err = p.withdrawStored(ctx)
	}
	switch {
	case errors.Is(err, errNotOwnAnnouncement) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		p.log.Info("announcement not withdrawn: another process announced under this replica's id since")
	case err != nil:
		p.log.Warn("withdraw announcement", zap.Error(err))
	}
}

// errNotOwnAnnouncement says that the announcement under this replica's id
// is another process's.
var errNotOwnAnnouncement = errors.New("the announcement is another process's")

// deleteAt deletes this replica's announcement if its revision is rev.
// The delete marker is KeyValue.Delete's, carrying the announcement
// withdrawn: a replica that starts after reads the marker alone (the
// bucket keeps one revision a key), and counts its tenants as served
// until ttl after the withdrawal, as those that saw the announcement do
// (withdrawalRead). A reader of an earlier release takes it for a plain
// delete.
func (p *Presence) deleteAt(ctx context.Context, rev uint64) error {
	m := nats.NewMsg("$KV." + BucketPresence + "." + p.id)
	m.Header.Set("KV-Operation", "DEL")
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	p.mu.Lock()
	m.Data = p.made
	p.mu.Unlock()
	_, err := p.js.PublishMsg(ctx, m)
	if IsWrongLastSequence(err) {
		return fmt.Errorf("%w: %w", err, jetstream.ErrKeyRevisionMismatch)
	}
	return err
}

// withdrawStored deletes the announcement stored under this replica's id
// if this process made it; none stored is nothing to do.
func (p *Presence) withdrawStored(ctx context.Context) error {
	e, err := p.kv.Get(ctx, p.id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var a announcement
	if decodeAnnouncement(e.Value(), &a) != nil || a.Instance != p.instance {
		return errNotOwnAnnouncement
	}
	return p.deleteAt(ctx, e.Revision())
}

// apply records one entry of the watch; nil marks the end of the entries
// that existed when the watch began.
func (p *Presence) apply(e jetstream.KeyValueEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e == nil {
		select {
		case <-p.current:
		default:
			close(p.current)
		}
		p.look()
		return
	}
	defer p.look()
	now := p.clock.Now()
	if e.Operation() != jetstream.KeyValuePut {
		p.deletedLocked(e, now)
		return
	}
	// Announced again (restarted under its name): its entry says what it
	// serves now.
	delete(p.gone, e.Key())
	var a announcement
	if err := decodeAnnouncement(e.Value(), &a); err != nil {
		p.log.Warn("unreadable announcement", zap.String("replica", e.Key()), zap.Error(err))
		return
	}
	// Liveness is measured on this replica's clock, from when it read the
	// entry: no two clocks are compared. An entry of a replica that died
	// without withdrawing counts for PresenceTTL after this one starts;
	// the assignment may count it less (staleLocked).
	if e.Key() == p.id {
		p.ownEntry(a, e.Revision(), e.Created(), now)
		return
	}
	old, known := p.others[e.Key()]
	if known && old.rev == e.Revision() {
		return // the same entry again (a new watch reads every entry): no sign of life
	}
	s := seenOf(a, e.Revision(), now, old)
	if !p.wasCurrentLocked() {
		s.stored = e.Created()
	}
	if known && (!maps.Equal(old.tenants, s.tenants) || !maps.Equal(old.apps, s.apps) || old.leaving != s.leaving || old.aside != s.aside) {
		p.moved = true // the same replica serves other tenants: the assignment changes
	}
	p.others[e.Key()] = s
	for _, t := range p.tenants {
		if p.otherApp(s, t) && (!known || !p.otherApp(old, t)) {
			p.log.Error("another replica's tenants file gives this tenant another Entra tenant or application: "+
				"neither replica works it until the files agree (its requests wait)",
				zap.String("tenant", t), zap.String("replica", e.Key()))
		}
		if other := p.otherName(s, t); other != "" && (!known || p.otherName(old, t) != other) {
			p.log.Error("another replica's tenants file gives this tenant's Entra tenant and application another name: "+
				"neither replica works it until the files agree (its requests wait)",
				zap.String("tenant", t), zap.String("other_name", other), zap.String("replica", e.Key()))
		}
	}
}

// deletedLocked records the deletion e (a withdrawal) of a replica's
// entry, read now. p.mu held.
func (p *Presence) deletedLocked(e jetstream.KeyValueEntry, now time.Time) {
	if old, known := p.others[e.Key()]; known {
		p.moved = true // Assigned reads the entries of the replicas live at the last look
		p.withdrawnLocked(e.Key(), old, now)
	} else if e.Key() != p.id {
		p.withdrawalRead(e, now)
	}
	delete(p.others, e.Key())
	if e.Key() == p.id {
		if twin, ok := p.twinLocked(); ok {
			p.withdrawnLocked(p.id, twin, now)
		}
		p.twinSeen = time.Time{} // another process under this id withdrew
	}
}

// staleLocked says whether another replica's entry s, read by the watch
// of this replica's start, stops counting in the assignment by now: ttl
// after the server stored it, on this clock as measured against the
// server's (ahead). An entry of a replica that died long before without
// withdrawing (its pod lost, rescheduled under another name) so takes
// no tenant: counted from its reading, it kept those it ranks first from
// this replica for three beats, while the replicas that saw it die gave
// them to this one, and nobody worked them. Until the offset is measured
// (the read of this process's first announcement failed: its watch
// brings that announcement after the others') the entry counts from its
// reading; once it is, from when it was stored. A live replica's entry
// is at most a beat old, unless NATS was away: taken for gone until its
// next beat, its tenants are worked here too meanwhile, which the quota
// journal keeps safe. It still counts as alive for everything else
// (Serves, Running): a live replica's call is never taken for a dead
// one's. A watch made again (NATS back) reads entries of replicas that
// could not announce themselves meanwhile: those count from when they
// are read. p.mu held.
func (p *Presence) staleLocked(s seen, now time.Time) bool {
	if s.stored.IsZero() || !p.aheadKnown {
		return false
	}
	at := s.stored.Add(p.ahead)
	return at.Before(s.at) && !now.Before(at.Add(p.ttl))
}

// withdrawnLocked records that replica id withdrew its announcement s,
// read now: its tenants count as served for ttl from now, if s still
// counted, or may have: while the view is behind (NATS away), s is old
// as the others' beats did not come, and the withdrawal, read once NATS
// is back, may be a second old, the replica restarting. p.mu held.
func (p *Presence) withdrawnLocked(id string, s seen, now time.Time) {
	if p.knownLocked(now) && !p.liveLocked(s, now) {
		return
	}
	s.at, s.twin, s.twins = now, nil, false
	p.gone[id] = s
}

// withdrawalRead records the withdrawal e of a replica this one did not
// see announce itself (it withdrew before this one started, or this one's
// watch was made again since): the marker carries the announcement
// withdrawn (deleteAt), whose tenants count as served until ttl after
// the server stored the marker, by the server's clock: read on this
// replica's clock as it was, a clock ttl ahead (one that sets this
// replica aside) dropped every withdrawal, and the tenants of a replica
// restarting were answered unknown_tenant at once. p.mu held.
func (p *Presence) withdrawalRead(e jetstream.KeyValueEntry, now time.Time) {
	var a announcement
	if len(e.Value()) == 0 || decodeAnnouncement(e.Value(), &a) != nil {
		return // a plain delete: an earlier release's, or an operator's
	}
	at := e.Created().Add(p.ahead)
	if at.After(now) {
		at = now
	}
	if now.Sub(at) >= p.ttl {
		return
	}
	p.gone[e.Key()] = seenOf(a, e.Revision(), at, seen{})
}

// seenOf is a's entry, of revision rev read at now, that follows old
// under the same replica id (none: the zero seen).
func seenOf(a announcement, rev uint64, now time.Time, old seen) seen {
	s := seen{instance: a.Instance, tenants: map[string]bool{}, apps: a.Apps, guards: a.Guards, names: map[string]string{}, leaving: a.Leaving, aside: a.Aside, at: now, rev: rev}
	for _, t := range a.Tenants {
		s.tenants[t] = true
		if d := a.Apps[t]; d != "" {
			s.names[d] = t
		}
	}
	s.followTwin(old)
	return s
}

// followTwin keeps, in s, the last announcement of another process under
// the same replica id (seen.twin) from old, the entry s follows (none:
// the zero seen).
func (s *seen) followTwin(old seen) {
	switch {
	case old.rev == 0:
	case old.instance == s.instance:
		s.twin, s.twins = old.twin, old.twins
	default:
		prev := old
		prev.twin, prev.twins = nil, false
		s.twin, s.twins = &prev, old.twin != nil && old.twin.instance == s.instance
	}
}

// LastAnnounced reads the presence bucket as it is now: for each tenant,
// when a replica that serves it last announced itself, by the server's
// clock (the entry's time). A replica that withdrew has no entry; one
// that died keeps its last until the bucket's TTL drops it. offboardctl
// status uses it to tell a tenant no worker serves.
func LastAnnounced(ctx context.Context, js jetstream.JetStream) (map[string]time.Time, error) {
	kv, err := js.KeyValue(ctx, BucketPresence)
	if err != nil {
		return nil, fmt.Errorf("presence bucket %s: %w", BucketPresence, err)
	}
	last := map[string]time.Time{}
	err = EachEntry(ctx, kv, func(e jetstream.KeyValueEntry) {
		var a announcement
		if decodeAnnouncement(e.Value(), &a) != nil {
			return
		}
		for _, t := range a.Tenants {
			if e.Created().After(last[t]) {
				last[t] = e.Created()
			}
		}
	}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", BucketPresence, err)
	}
	return last, nil
}

// Announced is one replica's entry of the presence bucket as
// ReadAnnounced reads it.
type Announced struct {
	Replica string
	Tenants []string
	// Guards is each tenant's guards digest; empty from a release before
	// it.
	Guards  map[string]string
	Leaving bool
	// At is when the entry was stored, by the server's clock: a live
	// replica stores one every beat.
	At time.Time
}

// ReadAnnounced reads every replica's entry of the presence bucket as it
// is now, sorted by replica id. A replica that withdrew has none; one
// that died keeps its last until the bucket's TTL drops it (At tells).
func ReadAnnounced(ctx context.Context, js jetstream.JetStream) ([]Announced, error) {
	kv, err := js.KeyValue(ctx, BucketPresence)
	if err != nil {
		return nil, fmt.Errorf("presence bucket %s: %w", BucketPresence, err)
	}
	var all []Announced
	err = EachEntry(ctx, kv, func(e jetstream.KeyValueEntry) {
		var a announcement
		if decodeAnnouncement(e.Value(), &a) != nil {
			return
		}
		all = append(all, Announced{Replica: e.Key(), Tenants: a.Tenants, Guards: a.Guards, Leaving: a.Leaving, At: e.Created()})
	}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", BucketPresence, err)
	}
	slices.SortFunc(all, func(a, b Announced) int { return strings.Compare(a.Replica, b.Replica) })
	return all, nil
}

// otherName is the name under which s serves this replica's Entra tenant
// and application of tenant, when that is another name ("": none). Two
// names of one application would each have their own quota journal,
// budget and ledger: twice the API's quota. p.mu held.
func (p *Presence) otherName(s seen, tenant string) string {
	mine := p.apps[tenant]
	if mine == "" {
		return ""
	}
	if name := s.names[mine]; name != "" && name != tenant && s.tenants[name] {
		return name
	}
	return ""
}

// otherApp says whether s serves tenant under another application than
// this replica's (both announced). p.mu held.
func (p *Presence) otherApp(s seen, tenant string) bool {
	mine, theirs := p.apps[tenant], s.apps[tenant]
	return s.tenants[tenant] && mine != "" && theirs != "" && mine != theirs
}

// otherGuards says whether s serves tenant with other guards than this
// replica's (both announced). p.mu held.
func (p *Presence) otherGuards(s seen, tenant string) bool {
	mine, theirs := p.guards[tenant], s.guards[tenant]
	return s.tenants[tenant] && mine != "" && theirs != "" && mine != theirs
}

// guardsOf names a tenant's guards as another replica announces them.
type guardsOf struct{ replica, tenant string }

// warnGuardsLocked warns once of each live replica that serves one of
// this replica's tenants with other guards, and again when its guards
// change; a replica no longer live, or agreeing, is forgotten. Only
// while the view is Known: behind, the live replicas are not known.
// p.mu held.
func (p *Presence) warnGuardsLocked(now time.Time) {
	if len(p.guards) == 0 || !p.knownLocked(now) {
		return
	}
	warned := make(map[guardsOf]string, len(p.guardsWarned))
	for _, id := range p.live {
		s := p.others[id]
		for t, theirs := range s.guards {
			if !p.otherGuards(s, t) {
				continue
			}
			key := guardsOf{id, t}
			if p.guardsWarned[key] != theirs {
				p.log.Warn("another replica applies other guards to this tenant: a request it takes may offboard a device "+
					"this replica protects, or the other way round (offboardctl guards shows both)",
					zap.String("tenant", t), zap.String("replica", id))
			}
			warned[key] = theirs
		}
	}
	p.guardsWarned = warned
}

// GuardsDiffer lists, sorted, the other live replicas that serve tenant
// with other guards than this one's (their announced digests differ);
// none while the view is not Known, which cannot tell.
func (p *Presence) GuardsDiffer(tenant string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.knownLocked(p.clock.Now()) {
		return nil
	}
	var ids []string
	for _, id := range p.live {
		if p.otherGuards(p.others[id], tenant) {
			ids = append(ids, id)
		}
	}
	return ids
}

// ID is this replica's id among the replicas.
func (p *Presence) ID() string { return p.id }

// AppDigest is what a replica announces of the Entra tenant and
// application a tenant name stands for: a digest, not the ids.
func AppDigest(tenantID, clientID string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(tenantID) + "\x00" + strings.ToLower(clientID)))
	return hex.EncodeToString(sum[:8])
}

// ownEntry records an entry under this replica's id: this process's own
// announcement coming back (the watch is current), or another process's
// under the same id, which is reported. p.mu held.
func (p *Presence) ownEntry(a announcement, rev uint64, created, now time.Time) {
	if a.Instance == p.instance {
		p.aheadOf(rev, created)
		// Only the latest announcement stored, the first time it comes
		// back: a new watch brings the last one stored again, however
		// long ago that was.
		if rev == p.putRev && rev != p.echoRev {
			if !p.knownLocked(now) {
				p.regained = now
			}
			p.echo, p.echoRev = now, rev
		}
		return
	}
	p.twinSeen, p.twinInst, p.twinTenants, p.twinLeaving, p.twinAside = now, a.Instance, a.Tenants, a.Leaving, a.Aside
	if now.Sub(p.twin) >= time.Minute {
		p.twin = now
		p.log.Error("another worker announces itself under this replica's id: give each replica its own --replica-id; "+
			"the other replicas cannot tell the two apart (meanwhile one of the two works the tenants both serve)",
			zap.String("replica_id", p.id), zap.Strings("its_tenants", a.Tenants))
	}
}

// wasCurrentLocked says whether the watch of this replica's start has
// read every entry. p.mu held.
func (p *Presence) wasCurrentLocked() bool {
	select {
	case <-p.current:
		return true
	default:
		return false
	}
}

// liveLocked says whether another replica's entry still counts: read
// within the last ttl, the time the view was behind not counted. A
// replica that died counts for ttl after the view is current again; one
// that lives announces itself meanwhile. p.mu held.
func (p *Presence) liveLocked(s seen, now time.Time) bool {
	from := s.at
	if p.regained.After(from) {
		from = p.regained
	}
	return now.Sub(from) < p.ttl
}

// Known says whether this replica's view of the others is current: its
// watch has read every entry that existed when it began, and brought
// this process's own announcement back within the last two beats. While
// it is not (NATS away, the watch being made again), the others'
// announcements may just not have come: the view says nothing of who
// is gone, and the assignment does not move.
func (p *Presence) Known() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.knownLocked(p.clock.Now())
}

func (p *Presence) knownLocked(now time.Time) bool {
	select {
	case <-p.current:
	default:
		return false
	}
	return now.Sub(p.echo) < 2*p.beat
}

// Current is closed once the replica knows every announcement that existed
// when it started: before then, Serves cannot say no.
func (p *Presence) Current() <-chan struct{} { return p.current }

// Instance is this process's mark: another process started under the
// same replica id has another.
func (p *Presence) Instance() string { return p.instance }

// Running says whether the process that marked its announcements with
// instance is alive: this one, or another replica whose announcement
// still counts. While the view is not Known it says yes: it cannot know
// otherwise. A process that stopped withdrew its announcement once its
// requests under way were finished; one that died is taken for alive
// until its announcement expires.
func (p *Presence) Running(instance string) bool {
	return instance == p.instance || p.anyLive(func(s seen) bool { return s.instance == instance })
}

// Serves says whether a live replica (this one included) serves tenant,
// or one that withdrew its announcement within the last ttl: a replica
// restarted, the only one to serve the tenant, is back by then. While the
// view is not Known it says yes: it cannot know otherwise.
func (p *Presence) Serves(tenant string) bool {
	return slices.Contains(p.tenants, tenant) || p.anyLive(func(s seen) bool { return s.tenants[tenant] }) || p.servedBefore(tenant)
}

// servedBefore says whether a replica that withdrew its announcement
// within the last ttl served tenant.
func (p *Presence) servedBefore(tenant string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	for _, s := range p.gone {
		if s.tenants[tenant] && now.Sub(s.at) < p.ttl {
			return true
		}
	}
	return false
}

// anyLive says whether another replica whose entry still counts matches,
// or, while the view is not Known, that one may.
func (p *Presence) anyLive(match func(seen) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if !p.knownLocked(now) {
		return true
	}
	for _, s := range p.others {
		if match(s) && p.liveLocked(s, now) {
			return true
		}
		// Of two processes under one id, the one whose announcement
		// the other's overwrote lives too, while its last counts.
		if s.twins && match(*s.twin) && p.liveLocked(*s.twin, now) {
			return true
		}
	}
	twin, ok := p.twinLocked()
	return ok && match(twin) && p.liveLocked(twin, now)
}

// twinLiveLocked says whether another process under this replica's id
// announced itself within the last ttl and did not say it stops. p.mu
// held.
func (p *Presence) twinLiveLocked(now time.Time) bool {
	return !p.twinSeen.IsZero() && !p.twinLeaving && now.Sub(p.twinSeen) < p.ttl
}

// twinLocked is the last announcement of another process under this
// replica's id, if one was read and not withdrawn since: a process alive
// and serving its tenants like any other replica, though the others
// cannot tell the two apart. p.mu held.
func (p *Presence) twinLocked() (seen, bool) {
	if p.twinSeen.IsZero() {
		return seen{}, false
	}
	s := seen{instance: p.twinInst, tenants: map[string]bool{}, leaving: p.twinLeaving, at: p.twinSeen}
	for _, t := range p.twinTenants {
		s.tenants[t] = true
	}
	return s, true
}

// look recomputes the live replicas and, when they or the tenants of one
// of them changed, closes the changed channel. A view that is not Known
// changes nothing: an announcement that did not come may be late, not
// gone. Except that a replica whose own announcement has not been stored
// for ttl, which the others take for gone, leaves to them the tenants
// they serve (yield), whether its view is Known or not: they take those
// tenants meanwhile. The caller holds p.mu.
func (p *Presence) look() {
	now := p.clock.Now()
	for id, s := range p.gone {
		if now.Sub(s.at) >= p.ttl {
			delete(p.gone, id)
		}
	}
	var live, twinned []string
	for id, s := range p.others {
		if p.forget > 0 && now.Sub(s.at) >= p.forget {
			// A replica that died without withdrawing: its entry has
			// left the bucket by now, silently.
			delete(p.others, id)
			continue
		}
		if p.liveLocked(s, now) && !p.staleLocked(s, now) {
			live = append(live, id)
		}
		if s.twins && p.liveLocked(*s.twin, now) {
			twinned = append(twinned, id)
		}
	}
	slices.Sort(live)
	slices.Sort(twinned)
	var yield []string
	if !p.putting && now.Sub(p.stored) >= p.ttl {
		yield = live
	}
	// Of the two, one aside leaves the tenants both serve to the other.
	twinAhead := !p.twinLeaving && now.Sub(p.twinSeen) < p.ttl &&
		(p.aside && !p.twinAside || p.aside == p.twinAside && p.twinInst > p.instance)
	changed := !slices.Equal(yield, p.yield) || twinAhead != p.twinAhead
	p.yield, p.twinAhead = yield, twinAhead
	switch {
	// Of two processes under one id, the one whose last announcement
	// stops counting (it died) works its tenants no more (worksLocked),
	// though the id's entries, the other's, go on unchanged.
	case p.knownLocked(now) && (!slices.Equal(live, p.live) || !slices.Equal(twinned, p.twinned) || p.moved):
		p.live, p.twinned, p.moved = live, twinned, false
		changed = true
	case p.moved:
		// Behind, the live replicas stay as they were; but Assigned reads
		// their entries as they are now (one stops, steps aside, serves
		// other tenants): the gates must hear of it.
		p.moved = false
		changed = true
	}
	p.warnGuardsLocked(now)
	if !changed {
		return
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// Changed is closed when the live replicas, and so the assignment of
// tenants, may have changed: the announcements changed, or one expired.
func (p *Presence) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Assigned says whether this replica should work the tenant now: of the
// live replicas that serve it, this one ranks highest by rendezvous
// hashing, and none of them announces another application for it, nor
// its application under another name. Every replica that sees the same
// announcements picks the same one. A replica that dies keeps its tenants
// until its announcement expires (three beats); one that stops says so
// (Leave), and its tenants move at once. One whose announcements cannot be
// stored (a permission withdrawn) lets go, once its last one expired, of
// each tenant another live replica serves, unless that one is aside while
// this one is not: the others take it. During a
// hand-over two replicas may briefly work one tenant: the quota journal
// keeps that safe; the assignment only saves contention. Of two processes
// started with one replica id by mistake, which rank alike, one works the
// tenants both serve, and the other replicas count the id as working each
// tenant either works (worksLocked). A replica aside
// (PresenceOptions.Aside) works only the tenants no other live replica
// that can make calls serves.
func (p *Presence) Assigned(tenant string) bool {
	if !slices.Contains(p.tenants, tenant) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaving || p.disputedLocked(tenant) != "" {
		return false
	}
	for _, id := range p.yield {
		// Not to one aside while this one can call: it makes no call.
		if works, aside := p.worksLocked(id, tenant); works && (!aside || p.aside) {
			return false
		}
	}
	if p.twinAhead && slices.Contains(p.twinTenants, tenant) {
		return false
	}
	mine := rank(p.id, tenant)
	for _, id := range p.live {
		works, aside := p.worksLocked(id, tenant)
		if !works || aside && !p.aside {
			continue // a replica that stops takes no more requests; one aside, none while another can
		}
		if r := rank(id, tenant); p.aside && !aside || r > mine || r == mine && id > p.id {
			return false
		}
	}
	return true
}

// worksLocked says whether another replica takes the tenant's requests
// (it serves it and does not stop), and whether it is aside. Of two
// processes under its id (seen.twins) live at the last look, whose
// entries take turns, the replica works the tenant while either does,
// aside only while every one that does is: the two leave it to the one
// that can call, or that does not stop, whichever entry was read last.
// Read from the last entry alone, the tenant moved to this replica at
// each beat of the one aside or stopping, and back at the other's. p.mu
// held.
func (p *Presence) worksLocked(id, tenant string) (works, aside bool) {
	s := p.others[id]
	works, aside = s.tenants[tenant] && !s.leaving, s.aside
	if _, twinned := slices.BinarySearch(p.twinned, id); !twinned || !s.twins {
		return works, aside
	}
	tw := s.twin
	switch twinWorks := tw.tenants[tenant] && !tw.leaving; {
	case twinWorks && !works:
		return true, tw.aside
	case twinWorks:
		return true, aside && tw.aside
	}
	return works, aside
}

// Disputed says why no replica works tenant now ("": it is not so): a
// live replica's tenants file gives the name another Entra tenant or
// application, or gives its application another name.
func (p *Presence) Disputed(tenant string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.disputedLocked(tenant)
}

func (p *Presence) disputedLocked(tenant string) string {
	for _, id := range p.live {
		if name := p.otherName(p.others[id], tenant); name != "" {
			// One application, two names: each would take the whole
			// quota. Neither works it; its requests wait.
			return fmt.Sprintf("replica %s serves its Entra tenant and application as %s", id, name)
		}
		if p.otherApp(p.others[id], tenant) {
			// One name, two applications: which is meant is not known,
			// and the other replica's requests would go to this one's
			// tenant. Neither works it; its requests wait.
			return fmt.Sprintf("replica %s serves it with another Entra tenant or application", id)
		}
	}
	return ""
}

// rank is a replica's score for a tenant in the rendezvous hashing.
func rank(replica, tenant string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(replica))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(tenant))
	// FNV's last bytes barely reach its high bits: mix them (splitmix64's
	// finaliser) so that the order of replicas is as good as random.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
