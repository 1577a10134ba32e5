package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
type Presence struct {
	kv      jetstream.KeyValue
	id      string
	tenants []string
	clock   clockwork.Clock
	log     *zap.Logger

	mu      sync.Mutex
	others  map[string]seen // by replica id
	current chan struct{}   // closed once the watch has read every entry
}

type seen struct {
	tenants map[string]bool
	at      time.Time // when this replica read the entry
}

// NewPresence prepares this replica's presence. id must be unique among
// replicas (a host name and process id, a pod name).
func NewPresence(ctx context.Context, js jetstream.JetStream, id string, tenants []string, clock clockwork.Clock, log *zap.Logger) (*Presence, error) {
	kv, err := js.KeyValue(ctx, BucketPresence)
	if err != nil {
		return nil, fmt.Errorf("presence bucket %s: %w", BucketPresence, err)
	}
	return &Presence{
		kv: kv, id: id, tenants: slices.Clone(tenants), clock: clock, log: log.Named("presence"),
		others: map[string]seen{}, current: make(chan struct{}),
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
	beat := p.clock.NewTicker(PresenceBeat)
	defer beat.Stop()
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
		return
	}
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
		if id != p.id && s.tenants[tenant] && now.Sub(s.at) < PresenceTTL {
			return true
		}
	}
	return false
}
