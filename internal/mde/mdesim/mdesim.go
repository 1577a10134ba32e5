package mdesim

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"
)

// API names used in Options.Limits, Call.API and the per-API methods.
const (
	APIOffboard       = "offboard"
	APIMachines       = "machines"
	APIMachineActions = "machineactions"
)

// Default scopes accepted by the token endpoint.
const (
	ScopeSecurityCenter = "https://api.securitycenter.microsoft.com/.default"
	ScopeWindowsATP     = "https://securitycenter.onmicrosoft.com/windowsatpservice/.default"
)

// OtherResources are the resources besides the API that every tenant has
// by default: the token endpoint issues a token for the .default scope
// of each, as Entra ID does, and the API refuses it (401).
var OtherResources = []string{
	"https://graph.microsoft.com",
	"https://graph.windows.net",
	"https://management.azure.com",
	"https://management.core.windows.net",
	"https://vault.azure.net",
	"https://storage.azure.com",
}

// App roles checked by the API.
const (
	RoleOffboard     = "Machine.Offboard"
	RoleReadAll      = "Machine.Read.All"
	RoleReadWriteAll = "Machine.ReadWrite.All"
)

// Machine Action statuses.
const (
	StatusPending    = "Pending"
	StatusInProgress = "InProgress"
	StatusSucceeded  = "Succeeded"
	StatusFailed     = "Failed"
	StatusTimeOut    = "TimeOut"
	StatusCancelled  = "Cancelled"
)

// Window is a sliding rate-limit window: at most Count calls per Length.
type Window struct {
	Count  int
	Length time.Duration
}

// Options configures a Server. The zero value is a usable configuration with
// the documented rate limits and no faults.
type Options struct {
	// Clock drives every time-dependent behaviour. Nil means the real clock.
	Clock clockwork.Clock
	// Limits holds the rate-limit windows per API name (APIOffboard,
	// APIMachines, APIMachineActions). An API missing from the map (or a
	// nil map) has the documented limits, 100/1m and 1500/1h, as the real
	// service does; an API present with no windows has none. Windows with a
	// non-positive Length are ignored; a Count of zero throttles every call.
	Limits map[string][]Window
	// Unlimited turns every rate limit off.
	Unlimited bool
	// OffboardStatus is the status of a successful offboard answer: 201 (the
	// default, as the service has been seen to answer) or 200 (as the
	// documentation says).
	OffboardStatus int
	// ShuffleLists answers list requests in random order: the real order is
	// not documented. A page of devices or actions holds what it would
	// hold unshuffled, in random order, so that $skip still reads each
	// once and $top the newest actions.
	ShuffleLists bool
	// ActionVisibleAfter hides a new action from reads and lists for that
	// long after its creation, as fresh actions have been seen missing for
	// a moment.
	ActionVisibleAfter time.Duration
	// MaxPage is the most records a list answer holds, whatever $top
	// asks; default 10,000, the documented maximum page size. An answer
	// it cuts short of what was asked carries @odata.nextLink to the
	// rest (server-driven paging), as list answers do when more follow.
	MaxPage int
	// TokenLifetime is the lifetime of issued access tokens; default 1h.
	TokenLifetime time.Duration
	// ActionCompleteAfter, when positive, makes a Pending action, or one
	// set InProgress, read as Succeeded once that long has passed since
	// its creation. Zero leaves
	// offboard actions Pending forever, as for a device that never comes
	// back online. An offboard of a device whose earlier offboard had
	// succeeded stays Pending either way: its sensor is stopped.
	ActionCompleteAfter time.Duration
	// DuplicateReturnsExisting selects the answer to an offboard request for
	// a machine that already has an unfinished offboard action: false gives
	// 400 ActiveRequestAlreadyExists, true gives 201 with the existing
	// action. Both have been seen from the real service.
	DuplicateReturnsExisting bool
	// EmptyMachineListNotFound answers a GET /api/machines page with no
	// device in it (a filter nothing passes, a $skip past the end) 404
	// NotFound instead of 200 with an empty list, as the List machines API
	// documents ("If there are no recent machines, you see 404 Not
	// Found"). Other list APIs documented so were seen answering 200 with
	// an empty set: both are possible.
	EmptyMachineListNotFound bool
	// OffboardAnyPlatform offboards a device of any platform but an old
	// Windows release, as a newer version of the Offboard machine API's
	// documentation lists macOS and Linux among the supported platforms.
	// False refuses a platform not starting with "Windows" with 400
	// OsPlatformNotSupported, as the older versions, still the most, say.
	// Both can be met. Windows releases no version lists (Windows 7,
	// 8.1, Server 2008 R2, Server 2012) are refused either way.
	OffboardAnyPlatform bool
	// NullActionMachineFields makes the answer to an offboard request carry
	// null machineId and computerDnsName, as the real service sometimes
	// does for a fresh Pending action. Later reads have both set.
	NullActionMachineFields bool
	// Latency is added to every API answer, slept on Clock.
	Latency time.Duration
	// FailRate is the probability of a 500 InternalServerError on an API
	// call, decided after authentication and rate limiting, before the call
	// has any effect.
	FailRate float64
	// Spurious404Rate is the probability of a 404 ResourceNotFound for a
	// machine that exists, on offboard and GET machine calls.
	Spurious404Rate float64
	// LostAnswerRate is the probability that an offboard call takes effect
	// (the action is created) but its answer is lost: the client gets a 504
	// GatewayTimeout, as behind a proxy that gave up waiting.
	LostAnswerRate float64
	// Rand is the source for fault injection; nil means a randomly seeded
	// one. It is only used under the server's lock.
	Rand *rand.Rand
	// Scopes are the scopes accepted by the token endpoint (compared
	// case-insensitively). Nil means ScopeSecurityCenter and
	// ScopeWindowsATP.
	Scopes []string
	// OtherResources are the resources besides the API the tenants have
	// (compared case-insensitively): the token endpoint issues a token
	// for "<resource>/.default", with that audience, which the API
	// answers 401. A scope of a resource neither the API nor one of these
	// is refused with AADSTS500011. Nil means OtherResources.
	OtherResources []string
	// LoginFault, when set, is how the token endpoint answers every
	// request for which no InjectLoginFault is pending.
	LoginFault LoginFault
	// OnCall, if set, is called with each API call after it was answered,
	// from the request's goroutine.
	OnCall func(Call)
	// HTTP2 offers HTTP/2 beside HTTP/1.1 when the client asks for it in
	// the TLS handshake (ALPN). Off, the simulator speaks HTTP/1.1 only:
	// whether the Defender API offers HTTP/2 is not documented, and
	// HTTP/1.1 is the costlier case for a client (a connection per call
	// under way).
	HTTP2 bool
}

// Tenant is an Entra ID tenant with one application registration that may
// call the API.
type Tenant struct {
	TenantID string // GUID
	ClientID string // application (client) id, GUID
	// ClientSecret is the accepted client secret; empty means none. See
	// SetSecret and AddSecret for rotation.
	ClientSecret string
	// Certificate, if set, lets the application authenticate with RS256 or
	// PS256 client assertions signed by this certificate's key.
	Certificate *x509.Certificate
	// Roles are the app roles put in issued tokens. Nil means RoleOffboard
	// and RoleReadAll; an empty non-nil slice means none.
	Roles []string
	// FederatedToken is a workload identity's token (as a Kubernetes
	// service-account token projected for Entra ID): accepted, as it is, as
	// a client assertion. Entra ID checks such a token against its issuer's
	// keys; the simulator compares it.
	FederatedToken string
}

// Machine is a device known to a tenant's MDE instance.
type Machine struct {
	ID              string // 40 lowercase hex; see NewMachineID
	ComputerDNSName string
	// OSPlatform is "Windows10", "Windows11", "WindowsServer2019", "Linux",
	// "macOS"... Offboarding a platform not starting with "Windows" answers
	// 400 OsPlatformNotSupported, unless Options.OffboardAnyPlatform, and
	// so does one of the Windows releases the API does not offboard
	// ("Windows7", "Windows8.1", "WindowsServer2008R2", "WindowsServer2012").
	// Empty means "Windows11".
	OSPlatform string
	// Version is the operating system's version as the service reports
	// it ("1709", "22H2"); empty is served null. A "Windows10" device of
	// a version before 1703 is refused 400 ClientVersionNotSupported.
	Version string
	// HealthStatus is "Active", "Inactive", ...; empty means what the
	// service shows for LastSeen when the machine is added: "Inactive"
	// when it is more than seven days before, else "Active".
	HealthStatus string
	// LastSeen is zero for "when added".
	LastSeen time.Time
	// FirstSeen is zero for LastSeen.
	FirstSeen time.Time
	// OnboardingStatus is empty for "Onboarded".
	OnboardingStatus string
	// MachineTags are the device's tags, served as given (none: []).
	MachineTags []string
	// RbacGroupName is the device group; empty is served as null.
	RbacGroupName string
	// RbacGroupID is the device group's id (0 when in no group).
	RbacGroupID int
	// Members replace members of the record as served, by name: a JSON
	// value, or nil to leave the member out. The API may answer any
	// member null, missing or of another kind.
	Members map[string]json.RawMessage
}

// Call records one HTTP request that reached the API routes (token and
// discovery requests are not recorded; see TokenRequests).
type Call struct {
	At        time.Time // clock time when the request was received
	TenantID  string    // from the token; "" if unauthenticated
	ClientID  string    // from the token; "" if unauthenticated
	API       string    // APIOffboard, APIMachines, APIMachineActions; "" for unknown routes
	Method    string
	Path      string // request URI: escaped path and raw query
	Status    int
	MachineID string // for offboard and GET machine
	ActionID  string // action created or returned, if any
	// Throttled is true when the answer was a 429 caused by a full rate
	// window (not an injected one).
	Throttled bool
}

// Server is the simulator. Its methods are safe for concurrent use.
type Server struct {
	opts  Options
	clock clockwork.Clock

	done      chan struct{}
	closeOnce sync.Once

	mu            sync.Mutex
	rnd           *rand.Rand
	tenants       map[string]*tenant // by lower-case tenant id
	tokens        map[string]*accessToken
	windows       map[windowKey][]time.Time // admitted call times, oldest first
	injections    map[injectKey][]*injection
	lostAnswers   map[string]int              // by lower-case tenant id: offboards whose answer is lost
	held          map[[2]string]chan struct{} // by lower-case tenant and machine id: offboard answers held (HoldAnswers)
	otherActions  map[string]int              // by lower-case tenant id: action reads answered with another action
	calls         []Call
	tokenRequests map[string]int             // by lower-case tenant id
	loginFaults   map[string]*loginInjection // by lower-case tenant id
	httpSrv       *httptest.Server
}

type tenant struct {
	id          string
	clientID    string
	secrets     []string
	cert        *x509.Certificate
	federated   string
	roles       []string
	registered  bool
	machines    map[string]*Machine       // by lower-case id
	machineList []*Machine                // in insertion order
	actions     []*MachineAction          // in creation order
	actionByID  map[string]*MachineAction // by lower-case id
	// offboards holds each machine's offboard actions in creation order,
	// by lower-case machine id: the duplicate check reads only these.
	offboards map[string][]*MachineAction
}

type accessToken struct {
	tenant   *tenant
	clientID string
	roles    []string
	expires  time.Time
	// audience is the other resource the token is for, in lower case;
	// "" for the API.
	audience string
}

// New returns a Server configured by opts. It serves nothing until
// StartTLS is called or its Handler is mounted.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.Scopes == nil {
		opts.Scopes = []string{ScopeSecurityCenter, ScopeWindowsATP}
	}
	if opts.OtherResources == nil {
		opts.OtherResources = OtherResources
	}
	if opts.OffboardStatus == 0 {
		opts.OffboardStatus = http.StatusCreated
	}
	// Unlimited: no window, whatever Limits gives.
	var given map[string][]Window
	if !opts.Unlimited {
		given = DefaultLimits()
		maps.Copy(given, opts.Limits)
	}
	limits := make(map[string][]Window, len(given))
	for api, ws := range given {
		var keep []Window
		for _, w := range ws {
			if w.Length > 0 && w.Count >= 0 {
				keep = append(keep, w)
			}
		}
		if len(keep) > 0 {
			limits[api] = keep
		}
	}
	opts.Limits = limits
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Server{
		opts:          opts,
		clock:         opts.Clock,
		done:          make(chan struct{}),
		rnd:           rnd,
		tenants:       make(map[string]*tenant),
		tokens:        make(map[string]*accessToken),
		windows:       make(map[windowKey][]time.Time),
		injections:    make(map[injectKey][]*injection),
		tokenRequests: make(map[string]int),
		loginFaults:   make(map[string]*loginInjection),
	}
}

// tenantLocked returns the tenant record for id, creating it if needed.
func (s *Server) tenantLocked(id string) *tenant {
	key := strings.ToLower(id)
	t := s.tenants[key]
	if t == nil {
		t = &tenant{
			id:         id,
			machines:   make(map[string]*Machine),
			actionByID: make(map[string]*MachineAction),
			offboards:  make(map[string][]*MachineAction),
		}
		s.tenants[key] = t
	}
	return t
}

// AddTenant registers a tenant and its application. Adding a tenant again
// replaces its application registration but keeps its machines and actions;
// tokens already issued stay valid until they expire.
func (s *Server) AddTenant(t Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tn := s.tenantLocked(t.TenantID)
	tn.id = t.TenantID
	tn.clientID = t.ClientID
	tn.secrets = nil
	if t.ClientSecret != "" {
		tn.secrets = []string{t.ClientSecret}
	}
	tn.cert = t.Certificate
	tn.federated = t.FederatedToken
	if t.Roles == nil {
		tn.roles = []string{RoleOffboard, RoleReadAll}
	} else {
		tn.roles = slices.Clone(t.Roles)
	}
	tn.registered = true
}

// SetSecret makes secret the only accepted client secret of the tenant's
// application: previous secrets are rejected from now on. Tokens already
// issued stay valid until they expire, as with Entra ID.
func (s *Server) SetSecret(tenantID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tn := s.tenantLocked(tenantID)
	tn.secrets = []string{secret}
}

// AddSecret adds an accepted client secret, keeping the existing ones, as
// during a rotation with two live secrets.
func (s *Server) AddSecret(tenantID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tn := s.tenantLocked(tenantID)
	tn.secrets = append(tn.secrets, secret)
}

// RevokeTokens makes the API refuse every access token issued to the
// tenant so far (401, "The access token is invalid."), as after a
// token's revocation; tokens issued from now on are accepted.
func (s *Server) RevokeTokens(tenantID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tn := s.tenantLocked(tenantID)
	for raw, tok := range s.tokens {
		if tok.tenant == tn {
			delete(s.tokens, raw)
		}
	}
}

// inactiveAfter is how long a device goes without a signal before the
// service shows it Inactive ("devices that have stopped sending signals
// for more than 7 days").
const inactiveAfter = 7 * 24 * time.Hour

// AddMachine adds or replaces a machine of the tenant. Empty fields get the
// defaults documented on Machine; an empty ID gets a NewMachineID.
func (s *Server) AddMachine(tenantID string, m Machine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.ID == "" {
		m.ID = NewMachineID()
	}
	if m.OSPlatform == "" {
		m.OSPlatform = "Windows11"
	}
	now := s.clock.Now()
	if m.LastSeen.IsZero() {
		m.LastSeen = now
	}
	if m.HealthStatus == "" {
		m.HealthStatus = "Active"
		if now.Sub(m.LastSeen) > inactiveAfter {
			m.HealthStatus = "Inactive"
		}
	}
	if m.FirstSeen.IsZero() {
		m.FirstSeen = m.LastSeen
	}
	if m.OnboardingStatus == "" {
		m.OnboardingStatus = "Onboarded"
	}
	m.MachineTags = slices.Clone(m.MachineTags)
	m.Members = cloneMembers(m.Members)
	tn := s.tenantLocked(tenantID)
	key := strings.ToLower(m.ID)
	if old := tn.machines[key]; old != nil {
		*old = m
		return
	}
	mc := m
	tn.machines[key] = &mc
	tn.machineList = append(tn.machineList, &mc)
}

// Machines returns a copy of the tenant's machines in insertion order.
func (s *Server) Machines(tenantID string) []Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	tn := s.tenants[strings.ToLower(tenantID)]
	if tn == nil {
		return nil
	}
	out := make([]Machine, len(tn.machineList))
	for i, m := range tn.machineList {
		out[i] = *m
		out[i].MachineTags = slices.Clone(m.MachineTags)
		out[i].Members = cloneMembers(m.Members)
	}
	return out
}

// cloneMembers is a copy of members, each value copied too: the caller's
// map and values stay apart from those the simulator serves under its
// lock.
func cloneMembers(members map[string]json.RawMessage) map[string]json.RawMessage {
	if members == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(members))
	for name, v := range members {
		out[name] = slices.Clone(v)
	}
	return out
}

// Handler returns the handler serving both the login routes
// (/{tenant}/v2.0/.well-known/openid-configuration and
// /{tenant}/oauth2/v2.0/token) and the API routes (/api/...).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// The service's clock, as every HTTP server tells it (net/http would
	// write the real clock's).
	w.Header().Set("Date", s.clock.Now().UTC().Format(http.TimeFormat))
	segs := splitPath(r.URL)
	switch {
	case len(segs) >= 1 && strings.EqualFold(segs[0], "api"):
		s.serveAPI(w, r, segs[1:])
	case len(segs) == 4 && strings.EqualFold(segs[1], "v2.0") &&
		segs[2] == ".well-known" && segs[3] == "openid-configuration":
		s.serveOpenIDConfig(w, r, segs[0])
	case len(segs) == 4 && strings.EqualFold(segs[1], "oauth2") &&
		strings.EqualFold(segs[2], "v2.0") && strings.EqualFold(segs[3], "token"):
		s.serveToken(w, r, segs[0])
	default:
		http.NotFound(w, r)
	}
}

// Calls returns a copy of the API call log in arrival order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// TokenRequests returns the number of requests, successful or not, made to
// the tenant's token endpoint.
func (s *Server) TokenRequests(tenantID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenRequests[strings.ToLower(tenantID)]
}

// ThrottledCount returns the number of the tenant's calls to api that were
// answered 429 because a rate window was full.
func (s *Server) ThrottledCount(tenantID, api string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Throttled && c.API == api && strings.EqualFold(c.TenantID, tenantID) {
			n++
		}
	}
	return n
}

// MaxInWindow returns the largest number of admitted calls (any answer but a
// rate-window 429) of the tenant to api that fell in any half-open interval
// [a, a+w.Length). Tests compare it to w.Count. Calls of every application
// of the tenant are counted.
func (s *Server) MaxInWindow(tenantID, api string, w Window) int {
	s.mu.Lock()
	var times []time.Time
	for _, c := range s.calls {
		if !c.Throttled && c.API == api && c.TenantID != "" && strings.EqualFold(c.TenantID, tenantID) {
			times = append(times, c.At)
		}
	}
	s.mu.Unlock()
	if w.Length <= 0 {
		return 0
	}
	slices.SortFunc(times, time.Time.Compare)
	best, i := 0, 0
	for j := range times {
		for !times[j].Before(times[i].Add(w.Length)) {
			i++
		}
		best = max(best, j-i+1)
	}
	return best
}

type injectKey struct{ tenant, api string }

type injection struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
	remaining  int
}

// InjectStatus makes the next n API calls of the tenant to api answer status
// with the given error code and message, after authentication and rate
// limiting and before method and role checks. Empty code and message get defaults for the status (for 429 the
// quota message with code "429"). A positive retryAfter sets the
// Retry-After header. Injections queue up in the order they were made.
//
// A call with n <= 0 drops every injection still queued for the tenant and
// API.
func (s *Server) InjectStatus(tenantID, api string, status int, code, message string, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := injectKey{strings.ToLower(tenantID), api}
	if n <= 0 {
		delete(s.injections, k)
		return
	}
	s.injections[k] = append(s.injections[k], &injection{
		status: status, code: code, message: message, retryAfter: retryAfter, remaining: n,
	})
}

// LoseAnswers makes the next n offboard calls of a tenant take effect but
// answer 504 GatewayTimeout, as if the answer was lost on the way back.
func (s *Server) LoseAnswers(tenantID string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lostAnswers == nil {
		s.lostAnswers = map[string]int{}
	}
	s.lostAnswers[strings.ToLower(tenantID)] = n
}

// AnswerOtherAction makes the next n reads of one action of a tenant
// (GET /api/machineactions/{id}) answer another action: the tenant's
// latest other one (another device's, or another of the same device's),
// or with none the action asked for under another id, as a cache or a
// proxy that mixes answers up would. The call records the id asked for.
func (s *Server) AnswerOtherAction(tenantID string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.otherActions == nil {
		s.otherActions = map[string]int{}
	}
	s.otherActions[strings.ToLower(tenantID)] = n
}

// otherActionLocked is the action to answer a read of a with under
// AnswerOtherAction; nil: a itself.
func (s *Server) otherActionLocked(tn *tenant, a *MachineAction) *MachineAction {
	k := strings.ToLower(tn.id)
	if s.otherActions[k] <= 0 {
		return nil
	}
	s.otherActions[k]--
	for i := len(tn.actions) - 1; i >= 0; i-- {
		if tn.actions[i] != a {
			return tn.actions[i]
		}
	}
	other := *a
	other.ID = uuid.NewString()
	return &other
}

// HoldAnswers makes offboard calls of a tenant's device wait, taken in
// and acted on but unanswered, until release is called or the caller
// gives up: a slow answer, as from a service under load, which holds a
// call under way for as long as a test needs.
func (s *Server) HoldAnswers(tenantID, machineID string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		s.held = map[[2]string]chan struct{}{}
	}
	k := [2]string{strings.ToLower(tenantID), strings.ToLower(machineID)}
	ch := make(chan struct{})
	s.held[k] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.held[k] == ch {
				delete(s.held, k)
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// heldLocked is the channel an offboard answer of the call waits on (nil:
// none).
func (s *Server) heldLocked(call *Call) chan struct{} {
	if call.API != APIOffboard {
		return nil
	}
	return s.held[[2]string{strings.ToLower(call.TenantID), strings.ToLower(call.MachineID)}]
}

func (s *Server) loseAnswerLocked(tenantID string) bool {
	k := strings.ToLower(tenantID)
	if s.lostAnswers[k] > 0 {
		s.lostAnswers[k]--
		return true
	}
	return s.chanceLocked(s.opts.LostAnswerRate)
}

func (s *Server) nextInjectionLocked(tenantID, api string) *injection {
	k := injectKey{strings.ToLower(tenantID), api}
	q := s.injections[k]
	if len(q) == 0 {
		return nil
	}
	inj := q[0]
	inj.remaining--
	if inj.remaining <= 0 {
		q = q[1:]
		if len(q) == 0 {
			delete(s.injections, k)
		} else {
			s.injections[k] = q
		}
	}
	return inj
}

// chanceLocked reports whether an event of probability p happens.
func (s *Server) chanceLocked(p float64) bool {
	return p > 0 && s.rnd.Float64() < p
}

// sleep waits d on the server's clock; it returns early when ctx is done or
// the server is closed.
func (s *Server) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
	case <-ctx.Done():
	case <-s.done:
	}
}
