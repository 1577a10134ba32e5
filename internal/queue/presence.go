package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
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
	kv      jetstream.KeyValue
	id      string
	tenants []string
	clock   clockwork.Clock
	log     *zap.Logger
	beat    time.Duration // how often this replica announces itself
	ttl     time.Duration // how long another's announcement counts

	mu      sync.Mutex
	others  map[string]seen // by replica id
	live    []string        // the other replicas live at the last look, sorted
	current chan struct{}   // closed once the watch has read every entry
	changed chan struct{}   // closed, and replaced, when the live replicas change
}

type seen struct {
	tenants map[string]bool
	at      time.Time // when this replica read the entry
}

// NewPresence prepares this replica's presence. id must be unique among
// replicas (a host name and process id, a pod name). beat is how often it
// announces itself (0: PresenceBeat); an announcement counts for three
// beats, so every replica must use the same beat.
func NewPresence(ctx context.Context, js jetstream.JetStream, id string, tenants []string, beat time.Duration, clock clockwork.Clock, log *zap.Logger) (*Presence, error) {
	kv, err := js.KeyValue(ctx, BucketPresence)
	if err != nil {
		return nil, fmt.Errorf("presence bucket %s: %w", BucketPresence, err)
	}
	if beat <= 0 {
		beat = PresenceBeat
	}
	return &Presence{
		kv: kv, id: id, tenants: slices.Clone(tenants), clock: clock, log: log.Named("presence"),
		beat: beat, ttl: 3 * beat,
		others: map[string]seen{}, current: make(chan struct{}), changed: make(chan struct{}),
	}, nil
}

// Run announces this replica every PresenceBeat and follows the others
// until ctx ends; then it withdraws the announcement.
func (p *Presence) Run(ctx context.Context) error {
	if err := p.announce(ctx); err != nil {
		return err
	}
	w, err := p.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", BucketPresence, err)
	}
	defer func() { _ = w.Stop() }()
	beat := p.clock.NewTicker(p.beat)
	defer beat.Stop()
	// Replicas that die do not say so: look for expired announcements a
	// few times per beat.
	expiry := p.clock.NewTicker(p.beat / 4)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			p.withdraw()
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("presence watch ended")
			}
			p.apply(e)
		case <-beat.Chan():
			if err := p.announce(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("announce", zap.Error(err))
			}
		case <-expiry.Chan():
			p.mu.Lock()
			p.look()
			p.mu.Unlock()
		}
	}
}

func (p *Presence) announce(ctx context.Context) error {
	data, err := json.Marshal(announcement{Tenants: p.tenants})
	if err != nil {
		return err
	}
	_, err = p.kv.Put(ctx, p.id, data)
	return err
}

// withdraw deletes this replica's announcement, so others stop counting on
// it at once rather than after PresenceTTL.
func (p *Presence) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.kv.Delete(ctx, p.id); err != nil {
		p.log.Warn("withdraw announcement", zap.Error(err))
	}
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
	if e.Operation() != jetstream.KeyValuePut {
		delete(p.others, e.Key())
		return
	}
	var a announcement
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		p.log.Warn("unreadable announcement", zap.String("replica", e.Key()), zap.Error(err))
		return
	}
	// Liveness is measured on this replica's clock, from when it read the
	// entry: no two clocks are compared. An entry of a replica that died
	// without withdrawing counts for PresenceTTL after this one starts.
	s := seen{tenants: map[string]bool{}, at: p.clock.Now()}
	for _, t := range a.Tenants {
		s.tenants[t] = true
	}
	p.others[e.Key()] = s
}

// Current is closed once the replica knows every announcement that existed
// when it started: before then, Serves cannot say no.
func (p *Presence) Current() <-chan struct{} { return p.current }

// Serves says whether a live replica (this one included) serves tenant.
// Before the watch is current it says yes: it cannot know otherwise.
func (p *Presence) Serves(tenant string) bool {
	if slices.Contains(p.tenants, tenant) {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.current:
	default:
		return true
	}
	now := p.clock.Now()
	for id, s := range p.others {
		if id != p.id && s.tenants[tenant] && now.Sub(s.at) < p.ttl {
			return true
		}
	}
	return false
}

// look recomputes the live replicas and, when they changed, closes the
// changed channel. The caller holds p.mu.
func (p *Presence) look() {
	now := p.clock.Now()
	var live []string
	for id, s := range p.others {
		if id != p.id && now.Sub(s.at) < p.ttl {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	if slices.Equal(live, p.live) {
		return
	}
	p.live = live
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
// hashing. Every replica that sees the same announcements picks the same
// one. A replica that dies keeps its tenants until its announcement
// expires (three beats); one that stops withdraws it, and its tenants move
// at once. During a hand-over two replicas may briefly work one tenant:
// the quota journal keeps that safe; the assignment only saves contention.
func (p *Presence) Assigned(tenant string) bool {
	if !slices.Contains(p.tenants, tenant) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	mine := rank(p.id, tenant)
	for _, id := range p.live {
		if !p.others[id].tenants[tenant] {
			continue
		}
		if r := rank(id, tenant); r > mine || r == mine && id > p.id {
			return false
		}
	}
	return true
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
