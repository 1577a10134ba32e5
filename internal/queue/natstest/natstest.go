package natstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connectTimeout is how long ConnectTo waits for the server's greeting.
const connectTimeout = 30 * time.Second

// Cluster is a set of NATS servers with JetStream: a cluster when there are
// several, a lone server otherwise.
type Cluster struct {
	tb   testing.TB
	mu   sync.Mutex
	opts []*server.Options
	srv  []*server.Server // nil while a server is down
	// ready bounds the wait for a server to accept clients (default 30 s,
	// a bound, not a measure: on a machine busy with other tests a server
	// recovering its store has taken more than 10 s).
	ready time.Duration
	// restarted marks the servers started again (Restart): in a cluster,
	// each makes its streams and consumers anew after it accepts clients
	// (catchUp).
	restarted []bool
}

// Start starts n servers (n > 1: clustered, with routes between all) and
// waits until they accept clients; with several, until JetStream has a
// meta leader. The servers are shut down when the test ends.
// A port found free can be taken by another connection on the machine
// before its server listens on it (the tests of other packages run
// meanwhile): the servers then start again on other ports, twice at most.
func Start(tb testing.TB, n int) *Cluster {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		c := newCluster(tb, n)
		err := c.startAll()
		if err == nil {
			tb.Cleanup(c.shutdownAll)
			if n > 1 {
				c.waitMetaLeader()
			}
			return c
		}
		c.shutdownAll()
		if attempt == 3 || !errors.Is(err, errPortTaken) {
			tb.Fatal(err)
		}
	}
}

// newCluster sets up n servers on free ports, none started.
func newCluster(tb testing.TB, n int) *Cluster {
	ports := freePorts(tb, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
	}
	c := &Cluster{tb: tb, srv: make([]*server.Server, n), ready: 30 * time.Second, restarted: make([]bool, n)}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1", Port: ports[i],
			JetStream: true, StoreDir: tb.TempDir(),
			NoSigs: true, NoLog: true, MaxPayload: 1 << 20,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "mde-offboard-test", Host: "127.0.0.1", Port: ports[n+i]}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		c.opts = append(c.opts, o)
	}
	return c
}

// startAll starts every server, each ready for clients.
func (c *Cluster) startAll() error {
	for i := range c.opts {
		if err := c.start(i); err != nil {
			return err
		}
	}
	return nil
}

// freePorts finds n ports nobody listens on. Fixed ports let a server come
// back where its peers and clients expect it. They are taken below the
// range the kernel gives outgoing connections their local ports from,
// where the tests' own connections would take them: a port of that range,
// free when found, was held by a client's connection when its server came
// to listen on it, and the server never started.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	lo, hi := listenRange()
	var ports []int
	var lis []net.Listener
	for tries := 0; len(ports) < n; tries++ {
		port := 0 // the kernel's choice
		if lo > 0 && tries < 100*n {
			port = lo + rand.IntN(hi-lo)
		}
		l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			if port == 0 {
				tb.Fatal(err)
			}
			continue // held by another socket: try another port
		}
		lis = append(lis, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range lis {
		_ = l.Close()
	}
	return ports
}

// FreeAddr is an address, 127.0.0.1 and a port nobody listens on, for a
// server the test starts there (a worker's HTTP listener, a NATS server
// started by a command); the port is taken as freePorts takes them.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePorts(tb, 1)[0])
}

// InOutgoingRange says whether the port of addr (host:port) lies in the
// range the kernel gives outgoing connections their local ports from,
// where a client connection can take it while nothing listens there;
// false where that range cannot be read.
func InOutgoingRange(addr string) bool {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil {
		return false
	}
	first, last, ok := outgoingRange()
	return ok && port >= first && port <= last
}

// listenRange is where freePorts looks for ports, [lo, hi): from 10000 to
// the start of the outgoing connections' range. 0, 0 where that range
// cannot be read or leaves too little below it: the kernel then chooses.
func listenRange() (lo, hi int) {
	first, _, ok := outgoingRange()
	if !ok || first < 11000 {
		return 0, 0
	}
	return 10000, first
}

// outgoingRange is the range the kernel gives outgoing connections their
// local ports from (Linux's ip_local_port_range); ok false where it
// cannot be read.
func outgoingRange() (first, last int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil {
		return 0, 0, false
	}
	return first, last, true
}

// URLs is the servers' client URLs, comma-separated, as a client takes them.
func (c *Cluster) URLs() string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

// Index is the position of the server named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// Shutdown stops server i, keeping its store.
func (c *Cluster) Shutdown(i int) {
	c.mu.Lock()
	s := c.srv[i]
	c.srv[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// NumClients is how many client connections server i holds now; 0 while
// it is down.
func (c *Cluster) NumClients(i int) int {
	c.mu.Lock()
	s := c.srv[i]
	c.mu.Unlock()
	if s == nil {
		return 0
	}
	return s.NumClients()
}

// Restart starts server i again on its ports and store, and waits until it
// accepts clients.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if err := c.start(i); err != nil {
		c.tb.Fatal(err)
	}
	c.mu.Lock()
	c.restarted[i] = true
	c.mu.Unlock()
}

// errPortTaken says that a server did not start because another socket
// held one of its ports.
var errPortTaken = errors.New("port taken")

// start starts server i on its ports and store, and waits until it
// accepts clients.
func (c *Cluster) start(i int) error {
	o := c.opts[i].Clone()
	s, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("server %s: %w", o.ServerName, err)
	}
	s.Start()
	if !s.ReadyForConnections(c.ready) {
		s.Shutdown()
		s.WaitForShutdown()
		if taken := portsTaken(o); taken != "" {
			return fmt.Errorf("server %s: not ready after %v (%s): %w", o.ServerName, c.ready, taken, errPortTaken)
		}
		return fmt.Errorf("server %s: not ready after %v", o.ServerName, c.ready)
	}
	c.mu.Lock()
	c.srv[i] = s
	c.mu.Unlock()
	return nil
}

// portsTaken says which of the server's ports (its clients', its
// routes') another socket holds: a port freed at a server's shutdown, or
// found free before its start, can be taken by any connection on the
// machine before the server listens on it. Empty: none.
func portsTaken(o *server.Options) string {
	var taken []string
	for _, port := range []int{o.Port, o.Cluster.Port} {
		if port == 0 {
			continue
		}
		l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			taken = append(taken, fmt.Sprintf("its port %d is taken: %v", port, err))
			continue
		}
		_ = l.Close()
	}
	return strings.Join(taken, "; ")
}

// shutdownAll shuts every server down, at the test's end, once the
// servers restarted have caught up (catchUp).
func (c *Cluster) shutdownAll() {
	c.catchUp()
	for i := range c.srv {
		c.Shutdown(i)
	}
}

// catchUpWait bounds catchUp's wait for one server: a bound, not a
// measure; past it the server is shut down all the same.
const catchUpWait = 20 * time.Second

// catchUp waits, up to catchUpWait each, until every server of a cluster
// restarted and still up has every stream and consumer placed on it and
// is current with them (its health check passes). A restarted server
// accepts clients first, then makes its streams as it reads the
// cluster's state: the others' answers can end a test meanwhile, and a
// stream's store made while its server shut down was never closed, its
// goroutines outliving the server (goleak failed the package after
// TestEnsureNeverLowersTheReplicas, whose node back with an empty store
// was shut down as it made its streams again).
func (c *Cluster) catchUp() {
	if len(c.srv) < 2 {
		return
	}
	for i := range c.srv {
		c.mu.Lock()
		s, restarted := c.srv[i], c.restarted[i]
		c.mu.Unlock()
		if s == nil || !restarted {
			continue
		}
		for deadline := time.Now().Add(catchUpWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if s.Healthz(nil).StatusCode == http.StatusOK {
				break
			}
		}
	}
}

// waitMetaLeader waits until JetStream in the cluster has a leader that
// counts every server as a peer it can place a stream on, and every server
// is current with it. A leader alone is not enough: until the others have
// reported to it, a stream with three replicas finds "no suitable peers for
// placement".
func (c *Cluster) waitMetaLeader() {
	c.tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c.jetStreamReady() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.tb.Fatal("JetStream cluster not formed after 20s: no meta leader, or not every server a current peer")
}

func (c *Cluster) jetStreamReady() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var leader *server.Server
	for _, s := range c.srv {
		if s == nil || !s.JetStreamIsCurrent() {
			return false
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	return leader != nil && len(leader.JetStreamClusterPeers()) == len(c.srv)
}

// StreamLeader is the index of the server leading the stream, waiting
// up to 20s for one.
func (c *Cluster) StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) int {
	c.tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s, err := js.Stream(ctx, stream)
		if err == nil {
			info, err := s.Info(ctx)
			if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
				if i := c.Index(info.Cluster.Leader); i >= 0 {
					return i
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.tb.Fatalf("stream %s: no leader after 20s", stream)
	return -1
}

// Name is the name of server i.
func (c *Cluster) Name(i int) string { return c.opts[i].ServerName }

// Connect starts a lone NATS server with JetStream on a free port, with its
// store in a temporary directory, and connects to it; both end with the
// test.
func Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return Start(tb, 1).Connect(tb)
}

// Connect connects to the servers, for the rest of the test.
func (c *Cluster) Connect(tb testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return ConnectTo(tb, c.URLs(), opts...)
}

// ConnectTo connects to the servers of url, for the rest of the test.
func ConnectTo(tb testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	// The library's 2 s for the server's greeting is short for a server
	// sharing a busy machine with other packages' tests; opts may set
	// their own.
	opts = append([]nats.Option{nats.Timeout(connectTimeout)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// StartWithoutJetStream starts a lone NATS server as a server without
// JetStream is (jetStream false), or, with jetStream true, one with
// JetStream whose only account, that of user "app" (password "app"),
// has none; it returns the server's URL. The server is shut down when the
// test ends.
func StartWithoutJetStream(tb testing.TB, jetStream bool) string {
	tb.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true}
	if jetStream {
		app := server.NewAccount("APP")
		o.JetStream, o.StoreDir = true, tb.TempDir()
		o.Accounts = []*server.Account{app}
		o.Users = []*server.User{{Username: "app", Password: "app", Account: app}}
	}
	s := startLone(tb, o)
	if !jetStream {
		return s.ClientURL()
	}
	return strings.Replace(s.ClientURL(), "nats://", "nats://app:app@", 1)
}

// StartWithUsers starts a lone NATS server with JetStream and these
// users, on a free port; it returns the server's URL, without
// credentials. The server is shut down when the test ends.
func StartWithUsers(tb testing.TB, users ...*server.User) string {
	tb.Helper()
	return startLone(tb, &server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: tb.TempDir(), Users: users,
	}).ClientURL()
}

// StartWithMaxPayload starts a lone NATS server with JetStream whose
// max_payload is maxPayload bytes, on a free port; it returns the
// server's URL. The server is shut down when the test ends.
func StartWithMaxPayload(tb testing.TB, maxPayload int32) string {
	tb.Helper()
	return startLone(tb, &server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: tb.TempDir(), MaxPayload: maxPayload,
	}).ClientURL()
}

// StartFromConfig starts a lone NATS server with JetStream from a
// nats-server configuration file (deploy/nats/accounts.conf), its
// passwords' variables set to password, on a free port; it returns the
// client URL, without credentials. The server is shut down when the test
// ends. It sets environment variables: not for parallel tests.
func StartFromConfig(t *testing.T, path, password string, passwordVars ...string) string {
	t.Helper()
	for _, v := range passwordVars {
		t.Setenv(v, password)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, t.TempDir(), true, true
	return startLone(t, opts).ClientURL()
}

// startLone starts a lone NATS server with opts and waits until it takes
// connections. It is shut down when the test ends.
func startLone(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("NATS server not ready")
	}
	return s
}

// Wipe removes server i's store while it is down, as a node whose disk
// was lost; Restart then brings it back empty.
func (c *Cluster) Wipe(i int) {
	c.tb.Helper()
	if err := os.RemoveAll(c.opts[i].StoreDir); err != nil {
		c.tb.Fatal(err)
	}
}

// StartWithPassword starts a lone NATS server with JetStream whose one
// user is user with password, on port (-1: a free one) and store dir; the
// caller shuts it down (a test restarts it with another password on the
// same port and store). A free port is one freePorts finds, where no
// client connection takes it while the server is down.
func StartWithPassword(tb testing.TB, port int, dir, user, password string) *server.Server {
	tb.Helper()
	if port == -1 {
		port = freePorts(tb, 1)[0]
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: dir, Username: user, Password: password})
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		tb.Fatal("NATS server not ready after 30s")
	}
	return s
}

// StartWithOptions starts a lone NATS server with JetStream, on a free
// port, with the options set tweaks; it returns the server's URL. The
// server is shut down when the test ends.
func StartWithOptions(tb testing.TB, tweak func(*server.Options)) string {
	tb.Helper()
	o := &server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: tb.TempDir(), MaxPayload: 1 << 20,
	}
	tweak(o)
	return startLone(tb, o).ClientURL()
}

// CreateStreamAgain creates the stream of cfg again right after a test
// deleted it. The server answers such a create "error creating store for
// stream" (10049) while it is still removing the old stream's store,
// which a loaded machine makes last: seen once in a CI run. It is created
// again every 20 ms for up to 5 s; another error fails the test at once.
func CreateStreamAgain(tb testing.TB, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := js.CreateStream(tb.Context(), cfg)
		var api *jetstream.APIError
		switch {
		case err == nil:
			return s
		case !errors.As(err, &api) || api.ErrorCode != jetstream.ErrorCode(server.JSStreamCreateErrF) || time.Now().After(deadline):
			tb.Fatalf("create stream %s again: %v", cfg.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
