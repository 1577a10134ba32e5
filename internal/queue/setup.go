package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go/jetstream"
)

// Settings shape the streams, consumers and ledger.
type Settings struct {
	Subjects      offboard.Subjects
	Tenants       []string      // configured tenant names
	Duplicates    time.Duration // duplicate window of the request and result streams
	Replicas      int           // stream replicas in a cluster
	ResultsMaxAge time.Duration // 0: keep results forever
	DeadMaxAge    time.Duration // 0: keep dead letters until removed
	LedgerTTL     time.Duration // how long a completed request id is remembered
	AckWait       time.Duration // how long a delivered request may go without progress
	MaxAckPending int           // per tenant and priority, across replicas
	QuotaHistory  time.Duration // how long quota journal entries are kept: longer than any window
	BudgetHistory time.Duration // how long budget journal entries are kept: longer than any budget
	// OrphanAge is how long a request of a tenant not configured here
	// waits with no consumer of its tenant before Restore and Ensure make
	// it one (orphans). Default a minute.
	OrphanAge time.Duration
	// Limits are the tenants' offboard limits ("100/1m,1500/1h"), kept in
	// their consumers' metadata (MetaLimits) for offboardctl status.
	Limits map[string]string
	// Budgets are the tenants' budgets from the tenants file ("500/24h"),
	// kept in their consumers' metadata (MetaBudget) for offboardctl status.
	Budgets map[string]string
}

// WithDefaults fills unset fields.
func (s Settings) WithDefaults() Settings {
	if s.Subjects.Prefix == "" {
		s.Subjects.Prefix = offboard.DefaultPrefix
	}
	if s.Duplicates <= 0 {
		s.Duplicates = 24 * time.Hour
	}
	if s.Replicas <= 0 {
		s.Replicas = 1
	}
	if s.LedgerTTL <= 0 {
		s.LedgerTTL = 30 * 24 * time.Hour
	}
	if s.AckWait <= 0 {
		s.AckWait = time.Minute
	}
	if s.MaxAckPending <= 0 {
		s.MaxAckPending = 256
	}
	if s.QuotaHistory <= 0 {
		s.QuotaHistory = 2 * time.Hour
	}
	if s.BudgetHistory <= 0 {
		s.BudgetHistory = DefaultBudgetHistory
	}
	if s.OrphanAge <= 0 {
		s.OrphanAge = time.Minute
	}
	return s
}

// Streams returns the definitions of the streams.
func (s Settings) Streams() []jetstream.StreamConfig {
	s = s.WithDefaults()
	p := s.Subjects.Prefix
	return []jetstream.StreamConfig{
		{
			Name:        offboard.StreamRequests,
			Description: "Defender for Endpoint offboard requests; a request leaves once its result is stored",
			Subjects:    []string{s.Subjects.AllRequests()},
			// Limits retention, with no limit: a request stays until the
			// worker that answered it deletes it (after its result is
			// stored and it is acked). Under interest retention the server
			// asks every consumer of the stream, for every ack, whether it
			// still needs the message, under the stream's lock: at a
			// thousand tenants (two thousand consumers) that capped the
			// stream at a few hundred requests a second. A delete costs
			// the same whatever the number of consumers.
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   s.Replicas,
			MaxMsgSize: offboard.MaxRequestMessage,
			Duplicates: s.Duplicates,
			Discard:    jetstream.DiscardNew,
			// Two consumers per tenant and the unrouted one, with room
			// for those of tenants no longer configured and for
			// operators' own. Unset, the server caps a stream at 1000
			// consumers: 500 tenants.
			MaxConsumers: 2*len(s.Tenants) + 1 + 1000,
		},
		{
			Name:        offboard.StreamResults,
			Description: "One result per offboard request, Machine Action status changes, and operators' control changes",
			Subjects:    []string{p + ".result.>", p + ".action.>", p + ".control.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.ResultsMaxAge,
			Duplicates:  s.Duplicates,
		},
		{
			Name:        offboard.StreamDead,
			Description: "Failed offboard requests as published, with Mde-Error-* headers, for inspection and replay",
			Subjects:    []string{p + ".dead.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.DeadMaxAge,
			Duplicates:  s.Duplicates,
		},
		{
			Name:        offboard.StreamQuota,
			Description: "The quota journal: every API call of every tenant, entered before it is sent, shared by all replicas",
			Subjects:    []string{s.Subjects.AllQuota()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.QuotaHistory,
			Discard:     jetstream.DiscardOld,
			Duplicates:  JournalDuplicates, // entries carry no message id
			// No direct gets: a follower could answer them behind the
			// leader, and a writer would spin on a stale last entry.
		},
		{
			Name:        offboard.StreamBudget,
			Description: "The budget journal: every offboard action of a tenant with a budget, reserved before its call, shared by all replicas",
			Subjects:    []string{s.Subjects.AllBudget()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.BudgetHistory,
			Discard:     jetstream.DiscardOld,
			Duplicates:  JournalDuplicates, // entries carry no message id
		},
	}
}

// JournalDuplicates is the duplicate window of the quota and budget
// journals, whose entries carry no message id. NATS refuses a stream that
// keeps its messages less long than this.
const JournalDuplicates = time.Minute

// DefaultBudgetHistory is how long the budget journal keeps its entries
// unless configured: budgets up to a day, with the reservation lease and
// room to spare.
const DefaultBudgetHistory = 48 * time.Hour

// BudgetLease is how long a budget slot may stay reserved before its
// outcome is written: the worker's calling lease. A slot of a process that
// died counts until then, and as a creation at that time after (an end
// written later is ignored): a request whose 429 pauses and backoffs
// outlast it makes no call past it, but takes a new slot (worker
// slotRunsOut).
const BudgetLease = 2 * time.Hour

// DefaultQuotaMargin is what a worker adds to the times other replicas
// wrote in the quota and budget journals, for clock skew, unless set.
const DefaultQuotaMargin = 500 * time.Millisecond

// BudgetHorizon is the longest budget window the budget journal can count
// when it keeps history and the worker adds margin: a worker refuses a
// longer budget in its tenants file and ignores a longer override.
func BudgetHorizon(history, margin time.Duration) time.Duration {
	return history - BudgetLease - margin
}

// Consumers returns the durable pull consumers of the request stream: one
// per tenant and priority, and the unrouted one.
func (s Settings) Consumers() []jetstream.ConsumerConfig {
	s = s.WithDefaults()
	out := make([]jetstream.ConsumerConfig, 0, 2*len(s.Tenants)+1)
	for _, t := range s.Tenants {
		for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
			meta := map[string]string{MetaTenant: t, MetaPriority: string(p)}
			if l := s.Limits[t]; l != "" {
				meta[MetaLimits] = l
			}
			if b := s.Budgets[t]; b != "" {
				meta[MetaBudget] = b
			}
			out = append(out, jetstream.ConsumerConfig{
				Metadata:      meta,
				Durable:       ConsumerName(t, p),
				Description:   fmt.Sprintf("%s-priority offboard requests of tenant %s", p, t),
				FilterSubject: s.Subjects.Request(t, p),
				DeliverPolicy: jetstream.DeliverAllPolicy,
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       s.AckWait,
				MaxDeliver:    -1, // never drop a request; poison input is answered, not redelivered
				MaxAckPending: s.MaxAckPending,
				MaxWaiting:    512,
				// The consumer keeps its state (what it delivered, what
				// is acked) in the server's memory, not in a file the
				// server rewrites up to ten times a second for each busy
				// consumer: at a thousand busy tenants those writes were
				// most of the server's CPU. Nothing rests on that state:
				// an answered request is deleted from the stream, so the
				// stream holds exactly the requests still to answer, and
				// the ledger keeps a request taken up again from being
				// answered twice or called twice (a consumer made again
				// delivers everything left from the start). A lone server
				// restarted loses these consumers; the worker makes them
				// again (Restore). In a cluster their definitions stay in
				// the meta group and their state on the other servers.
				MemoryStorage: true,
			})
		}
	}
	out = append(out, jetstream.ConsumerConfig{
		Metadata:      map[string]string{},
		Durable:       ConsumerUnrouted,
		Description:   "every request: answers those of unconfigured tenants",
		FilterSubject: s.Subjects.AllRequests(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
	})
	for i := range out {
		out[i].Metadata[MetaConfig] = configHash(out[i])
	}
	return out
}

// configHash fingerprints a consumer's configuration as this worker sets
// it (MetaConfig): the server adds defaults and metadata of its own, so
// its copy cannot be compared field by field.
func configHash(cfg jetstream.ConsumerConfig) string {
	b, err := json.Marshal(cfg) // map keys sorted: the same config, the same bytes
	if err != nil {
		panic(fmt.Sprintf("consumer config %s: %v", cfg.Durable, err)) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// Ledger returns the definition of the ledger bucket.
func (s Settings) Ledger() jetstream.KeyValueConfig {
	s = s.WithDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      offboard.BucketLedger,
		Description: "request ids in progress and completed, with their results",
		History:     1,
		TTL:         s.LedgerTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}
}

// Control returns the definition of the control bucket: operators'
// pauses and budget overrides, kept until changed.
func (s Settings) Control() jetstream.KeyValueConfig {
	s = s.WithDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      offboard.BucketControl,
		Description: "operators' controls per tenant: pauses, budget overrides, cancelled campaigns",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}
}

// PlansTTL is how long a campaign plan's CSV stays in the plans bucket
// when nobody fetched it.
const PlansTTL = 24 * time.Hour

// Plans returns the definition of the object store bucket that carries
// campaign plans too large for a reply.
func (s Settings) Plans() jetstream.ObjectStoreConfig {
	s = s.WithDefaults()
	return jetstream.ObjectStoreConfig{
		Bucket:      offboard.BucketPlans,
		Description: "campaign plans (CSV of stale devices) too large for the reply; removed once fetched",
		TTL:         PlansTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}
}

// Consumer metadata that marks the worker's tenant consumers.
const (
	MetaTenant   = "mde-offboard-tenant"
	MetaPriority = "mde-offboard-priority"
	// MetaLimits holds the tenant's offboard limits as the worker that
	// last set up the consumer had them, comma-separated.
	MetaLimits = "mde-offboard-offboard-limits"
	// MetaBudget holds the tenant's budget from the tenants file, as the
	// worker that last set up the consumer had it.
	MetaBudget = "mde-offboard-budget"
	// MetaConfig fingerprints the rest of the consumer's configuration as
	// the worker that last set it up had it; setup leaves a consumer whose
	// fingerprint matches its own alone.
	MetaConfig = "mde-offboard-config"
)

// Ensure creates or updates the streams, consumers and ledger. It is
// idempotent and safe to run from several replicas with the same tenants.
//
// A consumer whose configuration is what this worker would set (its
// MetaConfig matches) is left alone: with a thousand tenants, every start
// of every replica would otherwise send two thousand consumer updates to
// the server at once, while the replicas already up are working.
//
// It returns the names of tenant consumers left from an earlier
// configuration (marked with MetaTenant, tenant no longer configured). They
// are not removed: their requests would then sit in the stream unanswered
// (the unrouted consumer has let them go).
func Ensure(ctx context.Context, js jetstream.JetStream, s Settings) (stale []string, err error) {
	if err := ensureStreams(ctx, js, s); err != nil {
		return nil, err
	}
	var errs []error
	requests, err := requestStream(ctx, js)
	if err != nil {
		return nil, err
	}
	have, err := consumerConfigs(ctx, requests)
	if err != nil {
		return nil, err
	}
	var todo []jetstream.ConsumerConfig
	for _, cfg := range s.Consumers() {
		old, ok := have[cfg.Durable]
		if ok && old.Metadata[MetaConfig] == cfg.Metadata[MetaConfig] && !editedByHand(old, cfg) {
			continue
		}
		if ok && old.MemoryStorage != cfg.MemoryStorage {
			// The server cannot change a consumer's storage: made
			// again. Its requests stay in the stream; the new one
			// delivers them from the start, and the ledger answers
			// each once.
			if err := js.DeleteConsumer(ctx, offboard.StreamRequests, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				errs = append(errs, fmt.Errorf("consumer %s: delete to change its storage: %w", cfg.Durable, err))
				continue
			}
		}
		todo = append(todo, cfg)
	}
	orphans, err := s.orphans(ctx, requests, func(name string) bool { _, ok := have[name]; return ok })
	if err != nil {
		return nil, err
	}
	errs = append(errs, makeConsumers(ctx, js, append(todo, orphans...), s.Streams()[0].MaxConsumers))
	errs = append(errs, ensureBuckets(ctx, js, s))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	stale = s.stale(have)
	for _, cfg := range orphans {
		stale = append(stale, cfg.Durable)
	}
	slices.Sort(stale)
	return stale, nil
}

// otherPrefix refuses a request stream, as the server keeps it (nil: not
// there, or unreadable), that does not take this worker's requests: a
// worker of another --subject-prefix set it. Setting every stream to this
// worker's subjects would leave the requests stored under the other
// prefix unanswered, refuse its publishers' requests, and stall its
// workers, whose journal entries and results no stream would take. A
// stream whose subjects, written in another form, all fall under this
// worker's requests (one per priority) is this worker's.
func otherPrefix(have *jetstream.StreamConfig, s Settings) error {
	if have == nil || TakesRequestsOf(have.Subjects, s.Subjects) {
		return nil
	}
	return fmt.Errorf("stream %s takes %s, not %s: another worker runs with another --subject-prefix; give every replica the same one (to change it, stop every worker and edit the streams' subjects)",
		offboard.StreamRequests, strings.Join(have.Subjects, ", "), s.Subjects.AllRequests())
}

// TakesRequestsOf says whether a request stream of these subjects is the
// one of subjects' prefix: it takes that prefix's requests, or its
// subjects, written in another form, all fall under them. The worker
// (setup, or --no-setup) and offboardctl go by the same rule.
func TakesRequestsOf(streamSubjects []string, subjects offboard.Subjects) bool {
	want := subjects.AllRequests()
	return slices.Contains(streamSubjects, want) ||
		len(streamSubjects) > 0 && !slices.ContainsFunc(streamSubjects, func(sub string) bool { return !subjectWithin(sub, want) })
}

// subjectWithin says whether every subject sub matches (sub may hold
// wildcards) also matches pattern.
func subjectWithin(sub, pattern string) bool {
	st, pt := strings.Split(sub, "."), strings.Split(pattern, ".")
	for i, p := range pt {
		switch {
		case p == ">":
			return len(st) > i
		case i >= len(st) || st[i] == ">":
			return false // sub matches subjects of another length
		case p != "*" && st[i] != p:
			return false // also a "*" of sub where pattern has a token
		}
	}
	return len(st) == len(pt)
}

// ensureStreams creates or updates the streams (configAsSet). The request
// stream comes first: one another worker's --subject-prefix set refuses
// setup before any stream is touched (otherPrefix).
func ensureStreams(ctx context.Context, js jetstream.JetStream, s Settings) error {
	var errs []error
	for _, cfg := range s.Streams() {
		have, err := storedConfig(ctx, js, cfg.Name)
		if err != nil {
			// What it keeps (below) is read first: updated blind, the
			// stream would take this replica's shorter history, lower
			// limit of consumers or fewer replicas over the others'.
			// Without the request stream, whose subjects tell another
			// worker's prefix, none is touched.
			errs = append(errs, fmt.Errorf("stream %s: %w", cfg.Name, err))
			if cfg.Name == offboard.StreamRequests {
				return errors.Join(errs...)
			}
			continue
		}
		switch cfg.Name {
		case offboard.StreamRequests:
			if err := otherPrefix(have, s); err != nil {
				return err
			}
			cfg.MaxConsumers = keptMaxConsumers(have, cfg.MaxConsumers)
		case offboard.StreamQuota, offboard.StreamBudget:
			cfg.MaxAge = keptHistory(have, cfg.MaxAge)
		case offboard.StreamDead:
			cfg.MaxAge = keptDeadAge(have, cfg.MaxAge, cfg.Duplicates)
		}
		cfg.Replicas = keptReplicas(have, cfg.Replicas)
		if have != nil && configAsSet(*have, cfg) {
			continue
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ensureBuckets creates or updates the key-value buckets and the plans'
// object store, whose streams are compared whole (configAsSet): a
// bucket's own settings do not show what else an update sets back, such
// as the rollups a purge needs, and hold its history in a byte.
func ensureBuckets(ctx context.Context, js jetstream.JetStream, s Settings) error {
	var errs []error
	for _, kv := range []jetstream.KeyValueConfig{s.Ledger(), s.Presence(), s.Control()} {
		// Not updated blind when it cannot be read (keptReplicas).
		have, err := storedConfig(ctx, js, "KV_"+kv.Bucket)
		if err != nil {
			errs = append(errs, fmt.Errorf("bucket %s: %w", kv.Bucket, err))
			continue
		}
		if kv.Bucket == offboard.BucketLedger {
			// Never shortened, as the journals (keptHistory): a replica
			// of a shorter --ledger-ttl would cut the request ids and
			// followed actions the others remember.
			kv.TTL = keptHistory(have, kv.TTL)
		}
		kv.Replicas = keptReplicas(have, kv.Replicas)
		if have != nil && configAsSet(*have, kvStream(kv)) {
			continue
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			errs = append(errs, fmt.Errorf("bucket %s: %w", kv.Bucket, err))
		}
	}
	plans := s.Plans()
	have, err := storedConfig(ctx, js, "OBJ_"+plans.Bucket)
	plans.Replicas = keptReplicas(have, plans.Replicas)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("bucket %s: %w", plans.Bucket, err))
	case have == nil || !configAsSet(*have, objectStoreStream(plans)):
		if _, err := js.CreateOrUpdateObjectStore(ctx, plans); err != nil {
			errs = append(errs, fmt.Errorf("bucket %s: %w", plans.Bucket, err))
		}
	}
	return errors.Join(errs...)
}

// keptReplicas is the number of copies a stream or bucket keeps: setup
// never lowers it. A replica started with a lower --stream-replicas (the
// default 1, a flag forgotten in a rolling update, a canary) would take
// away the copies the other replicas count on to survive a node: the
// node holding the one copy left losing its disk would lose the requests
// waiting there, the quota journal and the ledger. To lower it, edit the
// streams once every replica runs the lower flag.
func keptReplicas(have *jetstream.StreamConfig, want int) int {
	if have == nil {
		return want
	}
	return max(have.Replicas, want)
}

// The streams and buckets are updated only when they differ from what
// setup would set: every replica's start updated all nine, and an update
// that crossed another replica's making of a consumer on the same stream
// raced inside the server (nats-server 2.15: the stream's configuration
// replaced while the consumer's store read it). A stream or bucket edited
// by hand differs, and is set back as before. What cannot be read says
// it differs: the update then says what is wrong. Where setup keeps what
// is stored (the request stream's limit of consumers, the journals' and
// the ledger's history, every stream's replicas), a read that fails
// fails setup instead.

// storedConfig is the stream's configuration as the server keeps it; nil
// when the stream is not there, and an error when it cannot be read.
func storedConfig(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamConfig, error) {
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &stream.CachedInfo().Config, nil
}

// configAsSet says whether a stream's configuration as the server keeps
// it, have, is want as it was sent: every field compared, with the
// limits the server keeps as -1 when not set, and without the server's
// own metadata.
func configAsSet(have, want jetstream.StreamConfig) bool {
	have.Metadata = ownMetadata(have.Metadata)
	want.Metadata = ownMetadata(want.Metadata)
	want.MaxBytes, want.MaxMsgs = unlimited(want.MaxBytes), unlimited(want.MaxMsgs)
	want.MaxMsgsPerSubject, want.MaxMsgSize = unlimited(want.MaxMsgsPerSubject), unlimited(want.MaxMsgSize)
	want.MaxConsumers = int(unlimited(int64(want.MaxConsumers)))
	return reflect.DeepEqual(have, want)
}

// kvStream is the stream of a key-value bucket as the client library
// (nats.go jetstream, prepareKeyValueConfig) makes it for cfg, which sets
// neither a mirror, sources, compression nor limit markers.
func kvStream(cfg jetstream.KeyValueConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + cfg.Bucket,
		Description:       cfg.Description,
		Subjects:          []string{"$KV." + cfg.Bucket + ".>"},
		MaxMsgsPerSubject: int64(max(cfg.History, 1)),
		MaxBytes:          cfg.MaxBytes,
		MaxAge:            cfg.TTL,
		MaxMsgSize:        cfg.MaxValueSize,
		Storage:           cfg.Storage,
		Replicas:          max(cfg.Replicas, 1),
		Placement:         cfg.Placement,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        duplicatesFor(cfg.TTL),
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		RePublish:         cfg.RePublish,
		Discard:           jetstream.DiscardNew,
		Metadata:          cfg.Metadata,
	}
}

// objectStoreStream is the stream of an object store as the client
// library (prepareObjectStoreConfig) makes it for cfg, which sets no
// compression.
func objectStoreStream(cfg jetstream.ObjectStoreConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        "OBJ_" + cfg.Bucket,
		Description: cfg.Description,
		Subjects:    []string{"$O." + cfg.Bucket + ".C.>", "$O." + cfg.Bucket + ".M.>"},
		MaxAge:      cfg.TTL,
		MaxBytes:    cfg.MaxBytes,
		Storage:     cfg.Storage,
		Replicas:    max(cfg.Replicas, 1),
		Placement:   cfg.Placement,
		Discard:     jetstream.DiscardNew,
		AllowRollup: true,
		AllowDirect: true,
		Metadata:    cfg.Metadata,
		Duplicates:  duplicatesFor(cfg.TTL),
	}
}

// duplicatesFor is the duplicate window of a stream sent without one
// whose messages live maxAge (0: for ever), as the server sets it, and
// as the client library sends it for a key-value bucket: two minutes, or
// maxAge when shorter.
func duplicatesFor(maxAge time.Duration) time.Duration {
	if maxAge > 0 && maxAge < 2*time.Minute {
		return maxAge
	}
	return 2 * time.Minute
}

// unlimited is n as the server keeps it: 0 (not set) is -1, no limit.
func unlimited[N int32 | int64](n N) N {
	if n == 0 {
		return -1
	}
	return n
}

// ownMetadata is a stream's metadata without the server's own (_nats.*);
// nil when none is left.
func ownMetadata(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if !strings.HasPrefix(k, "_nats.") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// keptMaxConsumers is the request stream's limit of consumers to set:
// want, or the stream's own (have; nil: none yet, or not read) if higher.
// Replicas with different tenants files (a rolling update, a canary) set
// up the same stream; one with fewer tenants must not take away the room
// another's consumers need, which it would then fail to make again after
// a lone server's restart.
func keptMaxConsumers(have *jetstream.StreamConfig, want int) int {
	if have == nil {
		return want // none yet; or the update says what is wrong
	}
	has := have.MaxConsumers
	if has < 0 {
		// None set (an operator's choice): kept while the consumers fit
		// under the server's own cap (makeConsumers).
		return has
	}
	return max(want, has)
}

// keptHistory is the max age a journal's stream, or the ledger's, keeps:
// setup never shortens it. Replicas with different --quota-history or
// --budget-history (a rolling update that changes one, a flag forgotten)
// set up the same journals, and one with a shorter history would cut
// entries the others' feeds still count, and refuse their restarts. To
// shorten a journal, edit its stream once every replica runs the shorter
// flag. No max age (0, kept for ever) is kept too.
func keptHistory(have *jetstream.StreamConfig, want time.Duration) time.Duration {
	if have == nil || want == 0 {
		return want
	}
	if have.MaxAge == 0 {
		return 0
	}
	return max(have.MaxAge, want)
}

// keptDeadAge is how long the dead-letter stream keeps its messages. No
// flag sets it (want is 0, keep them until removed): an operator who
// must not keep device ids and host names for ever sets a max age on the
// stream with the nats CLI, and setup keeps it rather than set the stream
// back to keep everything at every start. A max age under the duplicate
// window, which the server refuses, is raised to it.
func keptDeadAge(have *jetstream.StreamConfig, want, duplicates time.Duration) time.Duration {
	if have == nil || want != 0 || have.MaxAge == 0 {
		return want
	}
	return max(have.MaxAge, duplicates)
}

// makeConsumers creates or updates consumers. When the server refuses
// one for the request stream's limit of consumers, it raises the limit
// to want and tries once more: setup never lowers it, but a replica of an
// earlier release sets its own (a rollback, a canary), and so does a
// replica with fewer tenants whose setup read the limit just before
// another raised it; and a limit of -1 (none set) is not "no limit" on a
// server with the default settings, which caps such a stream at 1000
// consumers. The consumers of the replica with more tenants, or of more
// than 500 tenants, could not be made (at start, or again after a lone
// server's restart) and their requests waited.
func makeConsumers(ctx context.Context, js jetstream.JetStream, cfgs []jetstream.ConsumerConfig, want int) error {
	err := createConsumers(ctx, js, cfgs)
	if !maxConsumersReached(err) {
		return err
	}
	if rerr := raiseMaxConsumers(ctx, js, want); rerr != nil {
		return errors.Join(err, rerr)
	}
	return createConsumers(ctx, js, cfgs)
}

// errCodeMaxConsumers is nats-server's JSMaximumConsumersLimitErr.
const errCodeMaxConsumers jetstream.ErrorCode = 10026

// maxConsumersReached says whether err, of making consumers, holds a
// refusal for the stream's limit of consumers.
func maxConsumersReached(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeMaxConsumers
}

// raiseMaxConsumers sets the request stream's limit of consumers to want
// when it is lower or none is set (-1, which the server's own default
// caps). The stream's own configuration is written back, only the limit
// changed.
func raiseMaxConsumers(ctx context.Context, js jetstream.JetStream, want int) error {
	stream, err := requestStream(ctx, js)
	if err != nil {
		return err
	}
	cfg := stream.CachedInfo().Config
	if cfg.MaxConsumers >= want {
		return nil // raised meanwhile; or the account's limit refused it
	}
	cfg.MaxConsumers = want
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream %s: raise max_consumers to %d: %w", offboard.StreamRequests, want, err)
	}
	return nil
}

// editedByHand says whether the server's copy of a consumer differs from
// what the worker sets in what decides which requests it holds and keeps,
// and how it hands them out (nats consumer edit leaves the metadata, and
// so MetaConfig, as it was): requests it no longer holds, or drops after a
// delivery limit, would never be answered, a consumer whose pull
// limits are lower than the worker's pulls refuses every pull, or drops
// itself when idle, and one that delivers headers only hands out
// requests without their bodies.
func editedByHand(have, want jetstream.ConsumerConfig) bool {
	return have.FilterSubject != want.FilterSubject || len(have.FilterSubjects) > 0 || have.HeadersOnly != want.HeadersOnly ||
		have.MaxDeliver != want.MaxDeliver || have.AckWait != want.AckWait || have.MaxAckPending != want.MaxAckPending ||
		have.MaxRequestBatch != want.MaxRequestBatch || have.MaxRequestExpires != want.MaxRequestExpires ||
		have.MaxRequestMaxBytes != want.MaxRequestMaxBytes || have.InactiveThreshold != want.InactiveThreshold
}

// Stale lists the tenant consumers whose tenant is not configured.
func Stale(ctx context.Context, js jetstream.JetStream, s Settings) ([]string, error) {
	requests, err := requestStream(ctx, js)
	if err != nil {
		return nil, err
	}
	if err := otherPrefix(&requests.CachedInfo().Config, s); err != nil {
		return nil, err
	}
	have, err := consumerConfigs(ctx, requests)
	if err != nil {
		return nil, err
	}
	return s.stale(have), nil
}

// createConsumers creates or updates consumers, a few at a time: one by
// one, a thousand tenants took seconds.
func createConsumers(ctx context.Context, js jetstream.JetStream, cfgs []jetstream.ConsumerConfig) error {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		sema = make(chan struct{}, 16)
	)
	for _, cfg := range cfgs {
		sema <- struct{}{}
		wg.Go(func() {
			defer func() { <-sema }()
			if _, err := js.CreateOrUpdateConsumer(ctx, offboard.StreamRequests, cfg); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("consumer %s: %w", cfg.Durable, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Restore makes again the worker's consumers that the request stream
// lacks, and returns their names. A lone NATS server restarted comes back
// without the tenants' consumers, whose state is kept in memory
// (Consumers); the requests they held are still in the stream. Unlike
// Ensure it reads only the consumers' names and touches nothing else,
// but for the stream's limit of consumers when the server refuses a
// consumer for it (makeConsumers).
func Restore(ctx context.Context, js jetstream.JetStream, s Settings) ([]string, error) {
	stream, err := requestStream(ctx, js)
	if err != nil {
		return nil, err
	}
	have, err := consumerNames(ctx, stream)
	if err != nil {
		return nil, err
	}
	var missing []jetstream.ConsumerConfig
	for _, cfg := range s.Consumers() {
		if !have[cfg.Durable] {
			missing = append(missing, cfg)
		}
	}
	orphans, err := s.orphans(ctx, stream, func(name string) bool { return have[name] })
	if err != nil {
		return nil, err
	}
	missing = append(missing, orphans...)
	if err := makeConsumers(ctx, js, missing, s.Streams()[0].MaxConsumers); err != nil {
		return nil, err
	}
	made := make([]string, len(missing))
	for i, cfg := range missing {
		made[i] = cfg.Durable
	}
	return made, nil
}

// orphans are the consumers to make for requests that nobody may read:
// requests of a tenant not configured here, waiting in the stream, with no
// consumer of the tenant's. The unrouted consumer lets a served tenant's
// requests go to the tenant's consumers; after a lone server's restart
// those are gone (their state is in memory), and if no replica serves the
// tenant any more (removed from the tenants file) nobody makes them again.
// Made here, they are stale consumers (Stale), whose requests are
// answered unknown_tenant while no replica serves the tenant, and which a
// replica that serves it uses as its own. A request the unrouted consumer
// answered (or is about to) may be answered through them too: the answer
// carries the same message id, and the results stream keeps one. A subject
// whose oldest request the unrouted consumer has not delivered yet (it
// lags behind a backlog), or delivered less than OrphanAge ago as far as
// the request's age tells, is left for a later look: the unrouted consumer
// answers a tenant nobody serves within moments, and a consumer made for
// it would only add a stale consumer to the server.
func (s Settings) orphans(ctx context.Context, stream jetstream.Stream, exists func(name string) bool) ([]jetstream.ConsumerConfig, error) {
	s = s.WithDefaults()
	subjects, err := s.unread(ctx, stream, exists)
	if err != nil {
		return nil, err
	}
	if len(subjects) == 0 {
		return nil, nil
	}
	unrouted, err := stream.Consumer(ctx, ConsumerUnrouted)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil // it let nothing go
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerUnrouted, err)
	}
	seen := unrouted.CachedInfo().Delivered.Stream
	var (
		tenants []string
		want    = map[string]bool{}
	)
	for _, subject := range subjects {
		first, err := stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // answered meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: first request on %s: %w", offboard.StreamRequests, subject, err)
		}
		if first.Sequence > seen || time.Since(first.Time) < s.OrphanAge { // the server's clock: real time
			continue
		}
		t, p, _ := tenantSubject(s.Subjects, subject)
		want[ConsumerName(t, p)] = true
		if !slices.Contains(tenants, t) {
			tenants = append(tenants, t)
		}
	}
	var out []jetstream.ConsumerConfig
	for _, cfg := range (Settings{Subjects: s.Subjects, Tenants: tenants, AckWait: s.AckWait, MaxAckPending: s.MaxAckPending}).Consumers() {
		if want[cfg.Durable] {
			out = append(out, cfg)
		}
	}
	return out, nil
}

// unread lists, sorted, the request subjects of tenants not configured
// here that have requests waiting and no consumer of the tenant's.
func (s Settings) unread(ctx context.Context, stream jetstream.Stream, exists func(name string) bool) ([]string, error) {
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(s.Subjects.AllRequests()))
	if err != nil {
		return nil, fmt.Errorf("stream %s: requests waiting by subject: %w", offboard.StreamRequests, err)
	}
	configured := map[string]bool{}
	for _, t := range s.Tenants {
		configured[t] = true
	}
	var subjects []string
	for subject, n := range info.State.Subjects {
		// A subject no tenant's consumer can hold is the unrouted
		// consumer's to answer: it never lets such a request go.
		t, p, ok := tenantSubject(s.Subjects, subject)
		if n > 0 && ok && !configured[t] && !exists(ConsumerName(t, p)) {
			subjects = append(subjects, subject)
		}
	}
	slices.Sort(subjects)
	return subjects, nil
}

// stale picks, from the consumers' configurations by name, the worker's
// tenant consumers whose tenant is not configured.
func (s Settings) stale(have map[string]jetstream.ConsumerConfig) []string {
	want := map[string]bool{}
	for _, t := range s.Tenants {
		want[t] = true
	}
	var stale []string
	for name, cfg := range have {
		if t, ours := cfg.Metadata[MetaTenant]; ours && !want[t] {
			stale = append(stale, name)
		}
	}
	slices.Sort(stale)
	return stale
}

// tenantSubject reads the tenant and priority of a request subject that a
// tenant's consumer can hold: of a contract form, with a tenant name.
func tenantSubject(subjects offboard.Subjects, subject string) (tenant string, p offboard.Priority, ok bool) {
	tenant, p, ok = subjects.ParseRequest(subject)
	return tenant, p, ok && offboard.TenantName.MatchString(tenant)
}

// requestStream looks up the request stream.
func requestStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", offboard.StreamRequests, err)
	}
	return stream, nil
}

// consumerNames reads the names of every consumer of the request stream
// in one listing.
func consumerNames(ctx context.Context, stream jetstream.Stream) (map[string]bool, error) {
	have := map[string]bool{}
	names := stream.ConsumerNames(ctx)
	for name := range names.Name() {
		have[name] = true
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	return have, nil
}

// consumerConfigs reads the configuration of every consumer of the
// request stream in one listing (a page per 256 consumers).
func consumerConfigs(ctx context.Context, stream jetstream.Stream) (map[string]jetstream.ConsumerConfig, error) {
	have := map[string]jetstream.ConsumerConfig{}
	infos := stream.ListConsumers(ctx)
	for info := range infos.Info() {
		have[info.Name] = info.Config
	}
	if err := infos.Err(); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	return have, nil
}

// Check reports whether every stream, consumer and bucket the worker
// needs exist. /readyz uses it.
func Check(ctx context.Context, js jetstream.JetStream, s Settings) error {
	for _, cfg := range s.Streams() {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	// One listing rather than a lookup per consumer: with a thousand
	// tenants, a probe would otherwise cost two thousand requests.
	stream, err := requestStream(ctx, js)
	if err != nil {
		return err
	}
	have, err := consumerNames(ctx, stream)
	if err != nil {
		return err
	}
	for _, cfg := range s.Consumers() {
		if !have[cfg.Durable] {
			return fmt.Errorf("consumer %s: %w", cfg.Durable, jetstream.ErrConsumerNotFound)
		}
	}
	for _, bucket := range []string{offboard.BucketLedger, BucketPresence, offboard.BucketControl} {
		if _, err := js.KeyValue(ctx, bucket); err != nil {
			return fmt.Errorf("bucket %s: %w", bucket, err)
		}
	}
	// A plan too large for its reply goes through this bucket: without
	// it, every such plan fails.
	if _, err := js.ObjectStore(ctx, offboard.BucketPlans); err != nil {
		return fmt.Errorf("bucket %s: %w", offboard.BucketPlans, err)
	}
	return nil
}
