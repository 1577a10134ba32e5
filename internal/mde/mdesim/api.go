package mdesim

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

const (
	odataContextBase = "https://api.securitycenter.microsoft.com/api/$metadata#"
	// successContentType is what the real service sends with 2xx answers.
	successContentType = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
	errorContentType   = "application/json; charset=utf-8"
	// apiTimeLayout is the service's date-time format: UTC with up to
	// seven fractional digits, trailing zeros left out, none on a whole
	// second (the documentation's examples: "2021-01-25T07:27:36.052313Z",
	// "2021-01-26T20:33:59.2Z").
	apiTimeLayout = "2006-01-02T15:04:05.9999999Z"
	maxTop        = 10000
	maxBodyBytes  = 1 << 20
)

// MachineAction is a Machine Action as the API returns it. It marshals to
// the service's JSON form.
type MachineAction struct {
	ODataContext     string `json:"@odata.context,omitempty"`
	ID               string `json:"id"`
	Type             string `json:"type"`
	Title            string `json:"title"`
	Requestor        string `json:"requestor"`
	RequestorComment string `json:"requestorComment"`
	Status           string `json:"status"`
	// MachineID and ComputerDNSName are always set by the simulator; the
	// real service has been seen answering null for both on a fresh Pending
	// offboard (see Options.NullActionMachineFields).
	MachineID               string            `json:"machineId"`
	ComputerDNSName         string            `json:"computerDnsName"`
	CreationDateTimeUTC     time.Time         `json:"creationDateTimeUtc"`
	LastUpdateDateTimeUTC   time.Time         `json:"lastUpdateDateTimeUtc"`
	CancellationRequestor   *string           `json:"cancellationRequestor"`
	CancellationComment     *string           `json:"cancellationComment"`
	CancellationDateTimeUTC *time.Time        `json:"cancellationDateTimeUtc"`
	ErrorHResult            int               `json:"errorHResult"`
	Scope                   *string           `json:"scope"`
	ExternalID              *string           `json:"externalId"`
	RequestSource           string            `json:"requestSource"`
	RelatedFileInfo         json.RawMessage   `json:"relatedFileInfo"`
	Commands                []json.RawMessage `json:"commands"`
	TroubleshootInfo        json.RawMessage   `json:"troubleshootInfo"`

	// sensorStopped: the device's sensor had been stopped by an earlier
	// offboard that succeeded when this action was made. The device never
	// comes online for it, so it stays Pending whatever
	// Options.ActionCompleteAfter says.
	sensorStopped bool
}

type actionWire struct {
	ODataContext            string            `json:"@odata.context,omitempty"`
	ID                      string            `json:"id"`
	Type                    string            `json:"type"`
	Title                   string            `json:"title"`
	Requestor               string            `json:"requestor"`
	RequestorComment        string            `json:"requestorComment"`
	Status                  string            `json:"status"`
	MachineID               *string           `json:"machineId"`
	ComputerDNSName         *string           `json:"computerDnsName"`
	CreationDateTimeUTC     string            `json:"creationDateTimeUtc"`
	LastUpdateDateTimeUTC   string            `json:"lastUpdateDateTimeUtc"`
	CancellationRequestor   *string           `json:"cancellationRequestor"`
	CancellationComment     *string           `json:"cancellationComment"`
	CancellationDateTimeUTC *string           `json:"cancellationDateTimeUtc"`
	ErrorHResult            int               `json:"errorHResult"`
	Scope                   *string           `json:"scope"`
	ExternalID              *string           `json:"externalId"`
	RequestSource           string            `json:"requestSource"`
	RelatedFileInfo         json.RawMessage   `json:"relatedFileInfo"`
	Commands                []json.RawMessage `json:"commands"`
	TroubleshootInfo        json.RawMessage   `json:"troubleshootInfo"`
}

// MarshalJSON writes the action as the service does: date-times in UTC with
// up to seven fractional digits, absent optional values as null.
func (a MachineAction) MarshalJSON() ([]byte, error) {
	return json.Marshal(a.wire(false))
}

func (a MachineAction) wire(nullMachine bool) actionWire {
	w := actionWire{
		ODataContext:          a.ODataContext,
		ID:                    a.ID,
		Type:                  a.Type,
		Title:                 a.Title,
		Requestor:             a.Requestor,
		RequestorComment:      a.RequestorComment,
		Status:                a.Status,
		CreationDateTimeUTC:   formatTime(a.CreationDateTimeUTC),
		LastUpdateDateTimeUTC: formatTime(a.LastUpdateDateTimeUTC),
		CancellationRequestor: a.CancellationRequestor,
		CancellationComment:   a.CancellationComment,
		ErrorHResult:          a.ErrorHResult,
		Scope:                 a.Scope,
		ExternalID:            a.ExternalID,
		RequestSource:         a.RequestSource,
		RelatedFileInfo:       nullIfEmpty(a.RelatedFileInfo),
		Commands:              a.Commands,
		TroubleshootInfo:      nullIfEmpty(a.TroubleshootInfo),
	}
	if !nullMachine {
		w.MachineID, w.ComputerDNSName = &a.MachineID, &a.ComputerDNSName
	}
	if a.CancellationDateTimeUTC != nil {
		s := formatTime(*a.CancellationDateTimeUTC)
		w.CancellationDateTimeUTC = &s
	}
	if w.Commands == nil {
		w.Commands = []json.RawMessage{}
	}
	return w
}

func nullIfEmpty(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage("null")
	}
	return m
}

func formatTime(t time.Time) string { return t.UTC().Format(apiTimeLayout) }

type machineWire struct {
	ODataContext          string   `json:"@odata.context,omitempty"`
	ID                    string   `json:"id"`
	ComputerDNSName       string   `json:"computerDnsName"`
	FirstSeen             string   `json:"firstSeen"`
	LastSeen              string   `json:"lastSeen"`
	OSPlatform            string   `json:"osPlatform"`
	OSVersion             *string  `json:"osVersion"`
	OSProcessor           string   `json:"osProcessor"`
	Version               *string  `json:"version"`
	LastIPAddress         *string  `json:"lastIpAddress"`
	LastExternalIPAddress *string  `json:"lastExternalIpAddress"`
	AgentVersion          *string  `json:"agentVersion"`
	OSBuild               *int64   `json:"osBuild"`
	HealthStatus          string   `json:"healthStatus"`
	DeviceValue           string   `json:"deviceValue"`
	RbacGroupID           int      `json:"rbacGroupId"`
	RbacGroupName         *string  `json:"rbacGroupName"`
	RiskScore             string   `json:"riskScore"`
	ExposureLevel         string   `json:"exposureLevel"`
	IsAadJoined           bool     `json:"isAadJoined"`
	AadDeviceID           *string  `json:"aadDeviceId"`
	MachineTags           []string `json:"machineTags"`
	OnboardingStatus      string   `json:"onboardingStatus"`
	IPAddresses           []any    `json:"ipAddresses"`
}

func machineJSON(m *Machine, context string) machineWire {
	tags := slices.Clone(m.MachineTags)
	if tags == nil {
		tags = []string{}
	}
	var group *string
	if g := m.RbacGroupName; g != "" {
		group = &g // a copy: the answer is written after the lock is let go
	}
	return machineWire{
		ODataContext:     context,
		ID:               m.ID,
		ComputerDNSName:  m.ComputerDNSName,
		FirstSeen:        formatTime(m.FirstSeen),
		LastSeen:         formatTime(m.LastSeen),
		OSPlatform:       m.OSPlatform,
		Version:          nullIfBlank(m.Version),
		OSProcessor:      "x64",
		HealthStatus:     m.HealthStatus,
		DeviceValue:      "Normal",
		RiskScore:        "None",
		ExposureLevel:    "None",
		RbacGroupID:      m.RbacGroupID,
		RbacGroupName:    group,
		MachineTags:      tags,
		OnboardingStatus: m.OnboardingStatus,
		IPAddresses:      []any{},
	}
}

// nullIfBlank is s as a member the service writes null when empty; a
// copy: the answer is written after the lock is let go.
func nullIfBlank(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// servedMachine is the record of m as the API answers it: machineJSON
// with m.Members put in place.
func servedMachine(m *Machine, context string) any {
	w := machineJSON(m, context)
	if len(m.Members) == 0 {
		return w
	}
	b, err := json.Marshal(w)
	if err != nil {
		panic(err)
	}
	var record map[string]json.RawMessage
	if err := json.Unmarshal(b, &record); err != nil {
		panic(err)
	}
	for name, v := range m.Members {
		if v == nil {
			delete(record, name)
		} else {
			record[name] = slices.Clone(v) // a copy: the answer is written after the lock is let go
		}
	}
	return record
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

// reply is an API answer decided under the server's lock.
type reply struct {
	status     int
	body       any
	retryAfter time.Duration
}

func errorReply(status int, code, msg string) reply {
	return reply{status: status, body: errorBody{errorDetail{Code: code, Message: msg, Target: uuid.NewString()}}}
}

func (rep reply) write(w http.ResponseWriter) {
	ct := successContentType
	if rep.status >= 400 {
		ct = errorContentType
	}
	if rep.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(rep.retryAfter), 10))
	}
	writeJSON(w, rep.status, ct, rep.body)
}

type routeKind int

const (
	routeListMachines routeKind = iota + 1
	routeGetMachine
	routeOffboard
	routeListActions
	routeGetAction
)

type route struct {
	kind   routeKind
	api    string
	method string
	id     string
}

func matchRoute(segs []string) (route, bool) {
	eq := strings.EqualFold
	switch {
	case len(segs) == 1 && eq(segs[0], "machines"):
		return route{routeListMachines, APIMachines, http.MethodGet, ""}, true
	case len(segs) == 2 && eq(segs[0], "machines") && segs[1] != "":
		return route{routeGetMachine, APIMachines, http.MethodGet, segs[1]}, true
	case len(segs) == 3 && eq(segs[0], "machines") && segs[1] != "" && eq(segs[2], "offboard"):
		return route{routeOffboard, APIOffboard, http.MethodPost, segs[1]}, true
	case len(segs) == 1 && eq(segs[0], "machineactions"):
		return route{routeListActions, APIMachineActions, http.MethodGet, ""}, true
	case len(segs) == 2 && eq(segs[0], "machineactions") && segs[1] != "":
		return route{routeGetAction, APIMachineActions, http.MethodGet, segs[1]}, true
	}
	return route{}, false
}

func splitPath(u *url.URL) []string {
	p := strings.Trim(u.EscapedPath(), "/")
	if p == "" {
		return nil
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			segs[i] = d
		}
	}
	return segs
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, segs []string) {
	rt, found := matchRoute(segs)
	var body []byte
	var bodyErr error
	if found && rt.kind == routeOffboard && r.Method == http.MethodPost {
		body, bodyErr = io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if bodyErr == nil && len(body) > maxBodyBytes {
			bodyErr = fmt.Errorf("request body larger than %d bytes", maxBodyBytes)
		}
	}

	s.mu.Lock()
	now := s.clock.Now()
	call := Call{At: now, API: rt.api, Method: r.Method, Path: r.URL.RequestURI()}
	if rt.kind == routeOffboard || rt.kind == routeGetMachine {
		call.MachineID = rt.id
	}
	rep := s.handleAPILocked(r, rt, found, body, bodyErr, now, &call)
	call.Status = rep.status
	s.calls = append(s.calls, call)
	held := s.heldLocked(&call)
	s.mu.Unlock()

	if held != nil {
		select {
		case <-held:
		case <-r.Context().Done():
		case <-s.done:
		}
	}
	s.sleep(r.Context(), s.opts.Latency)
	rep.write(w)
	if s.opts.OnCall != nil {
		s.opts.OnCall(call)
	}
}

// handleAPILocked answers an API request. The order: authentication (401),
// route (404), rate windows (429), injected statuses, injected failures
// (500), method (405), roles (403), then the call itself.
func (s *Server) handleAPILocked(r *http.Request, rt route, found bool, body []byte, bodyErr error, now time.Time, call *Call) reply {
	tok, rep := s.authenticateLocked(r, now)
	if tok == nil {
		return rep
	}
	tn := tok.tenant
	call.TenantID, call.ClientID = tn.id, tok.clientID
	if !found {
		return errorReply(http.StatusNotFound, "NotFound", "No HTTP resource was found that matches the request URI.")
	}

	k := windowKey{strings.ToLower(tn.id), strings.ToLower(tok.clientID), rt.api}
	if ok, full, wait := s.admitLocked(k, now); !ok {
		call.Throttled = true
		rep := errorReply(http.StatusTooManyRequests, "429", quotaMessage(full))
		rep.retryAfter = wait
		return rep
	}
	if inj := s.nextInjectionLocked(tn.id, rt.api); inj != nil {
		return s.injectedReply(inj)
	}
	if s.chanceLocked(s.opts.FailRate) {
		return errorReply(http.StatusInternalServerError, "InternalServerError", "An unexpected error occurred. Please try again later.")
	}
	if r.Method != rt.method {
		return errorReply(http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The requested resource does not support http method '%s'.", r.Method))
	}
	if rt.kind == routeOffboard {
		if !slices.Contains(tok.roles, RoleOffboard) {
			return errorReply(http.StatusForbidden, "Forbidden", "Missing application roles. API required roles: "+RoleOffboard)
		}
	} else if !slices.Contains(tok.roles, RoleReadAll) && !slices.Contains(tok.roles, RoleReadWriteAll) {
		return errorReply(http.StatusForbidden, "Forbidden", "Missing application roles. API required roles: "+RoleReadAll)
	}

	switch rt.kind {
	case routeOffboard:
		rep := s.offboardLocked(r, tok, rt.id, body, bodyErr, now, call)
		if rep.status/100 == 2 && s.loseAnswerLocked(tn.id) {
			return errorReply(http.StatusGatewayTimeout, "GatewayTimeout", "The gateway did not receive a response in time.")
		}
		return rep
	case routeGetMachine:
		return s.getMachineLocked(tn, rt.id, call)
	case routeListMachines:
		return s.listMachinesLocked(tn, r)
	case routeGetAction:
		return s.getActionLocked(tn, rt.id, now, call)
	default:
		return s.listActionsLocked(tn, r, now)
	}
}

func (s *Server) authenticateLocked(r *http.Request, now time.Time) (*accessToken, reply) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errorReply(http.StatusUnauthorized, "Unauthorized", "Authorization header is missing.")
	}
	scheme, raw, _ := strings.Cut(h, " ")
	raw = strings.TrimSpace(raw)
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return nil, errorReply(http.StatusUnauthorized, "Unauthorized", "Authorization header must be 'Bearer <token>'.")
	}
	tok := s.tokens[raw]
	if tok == nil {
		return nil, errorReply(http.StatusUnauthorized, "Unauthorized", "The access token is invalid.")
	}
	if !now.Before(tok.expires) {
		return nil, errorReply(http.StatusUnauthorized, "Unauthorized", "The access token has expired.")
	}
	if tok.audience != "" {
		// A token Entra ID issued for another resource (a scope of
		// another service or cloud): valid, but not for this API.
		return nil, errorReply(http.StatusUnauthorized, "Unauthorized", "The access token's audience is not valid for this API.")
	}
	return tok, reply{}
}

func (s *Server) injectedReply(inj *injection) reply {
	code, msg := inj.code, inj.message
	if code == "" {
		switch inj.status {
		case http.StatusTooManyRequests:
			code = "429"
		case http.StatusBadRequest:
			code = "BadRequest"
		case http.StatusInternalServerError:
			code = "InternalServerError"
		default:
			code = strings.ReplaceAll(http.StatusText(inj.status), " ", "")
		}
	}
	if msg == "" {
		if inj.status == http.StatusTooManyRequests {
			msg = quotaMessage(Window{Count: 100, Length: time.Minute})
		} else {
			msg = http.StatusText(inj.status)
		}
	}
	rep := errorReply(inj.status, code, msg)
	rep.retryAfter = inj.retryAfter
	return rep
}

func isWindows(platform string) bool {
	return strings.HasPrefix(strings.ToLower(platform), "windows")
}

// oldWindows are Windows releases that no version of the Offboard
// machine API's documentation lists (it names Windows 11, Windows 10
// 1703 and later, Windows Server 2019 and later, and Windows Server
// 2012 R2 and 2016 with the unified agent): they are refused whatever
// Options.OffboardAnyPlatform says.
var oldWindows = []string{
	"WindowsXP", "WindowsVista", "Windows7", "Windows8", "Windows8.1",
	"WindowsServer2003", "WindowsServer2008", "WindowsServer2008R2", "WindowsServer2012",
}

// offboardablePlatform says whether the service offboards a device of
// platform: Windows but an old release, and with anyPlatform every
// other platform too.
func offboardablePlatform(platform string, anyPlatform bool) bool {
	if slices.ContainsFunc(oldWindows, func(old string) bool { return strings.EqualFold(old, platform) }) {
		return false
	}
	return anyPlatform || isWindows(platform)
}

// minWindows10Version is the first Windows 10 version the API offboards
// ("Windows 10, version 1703 and later").
const minWindows10Version = 1703

// windows10TooOld says whether a device is a Windows 10 of a version,
// written as its year and month ("1607"), before minWindows10Version.
// Later versions are written otherwise too ("21H2").
func windows10TooOld(m *Machine) bool {
	if !strings.EqualFold(m.OSPlatform, "Windows10") || len(m.Version) != 4 {
		return false
	}
	v, err := strconv.Atoi(m.Version)
	return err == nil && v < minWindows10Version
}

// unsupported is the service's refusal of a device it cannot offboard:
// its platform, or its version of Windows 10.
func unsupported(m *Machine, anyPlatform bool) (reply, bool) {
	if !offboardablePlatform(m.OSPlatform, anyPlatform) {
		return errorReply(http.StatusBadRequest, "OsPlatformNotSupported",
			fmt.Sprintf("Offboard is not supported for OS platform %s.", m.OSPlatform)), true
	}
	if windows10TooOld(m) {
		return errorReply(http.StatusBadRequest, "ClientVersionNotSupported",
			fmt.Sprintf("Offboard is supported on client version %d and above.", minWindows10Version)), true
	}
	return reply{}, false
}

// offboardLocked checks the request in the order the service does: body,
// machine, platform and version, pending action; then it creates the
// action.
func (s *Server) offboardLocked(r *http.Request, tok *accessToken, id string, body []byte, bodyErr error, now time.Time, call *Call) reply {
	// A missing or non-JSON Content-Type is answered like an unreadable body.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return errorReply(http.StatusBadRequest, "InvalidRequestBody", "Content-Type must be application/json.")
	}
	if bodyErr != nil {
		return errorReply(http.StatusBadRequest, "InvalidRequestBody", "Request body could not be read.")
	}
	comment, rep, ok := parseOffboardBody(body)
	if !ok {
		return rep
	}

	tn := tok.tenant
	m := tn.machines[strings.ToLower(id)]
	if m == nil || s.chanceLocked(s.opts.Spurious404Rate) {
		return errorReply(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Machine %s was not found.", id))
	}
	call.MachineID = m.ID
	if rep, refused := unsupported(m, s.opts.OffboardAnyPlatform); refused {
		return rep
	}
	machineKey := strings.ToLower(m.ID)
	mine := tn.offboards[machineKey]
	unfinished, stopped := s.earlierOffboardsLocked(mine, now)
	if unfinished != nil {
		if s.opts.DuplicateReturnsExisting {
			call.ActionID = unfinished.ID
			return s.actionReply(s.opts.OffboardStatus, *unfinished, true)
		}
		return errorReply(http.StatusBadRequest, "ActiveRequestAlreadyExists",
			"Action is already in progress.")
	}

	title := "Offboard machine " + m.ComputerDNSName
	if m.ComputerDNSName == "" {
		title = "Offboard machine " + m.ID
	}
	a := &MachineAction{
		ID:                    uuid.NewString(),
		Type:                  "Offboard",
		Title:                 title,
		Requestor:             tok.clientID,
		RequestorComment:      comment,
		Status:                StatusPending,
		MachineID:             m.ID,
		ComputerDNSName:       m.ComputerDNSName,
		CreationDateTimeUTC:   now.UTC(),
		LastUpdateDateTimeUTC: now.UTC(),
		RequestSource:         "PublicApi",
		Commands:              []json.RawMessage{},
		sensorStopped:         stopped,
	}
	tn.actions = append(tn.actions, a)
	tn.offboards[machineKey] = append(mine, a)
	tn.actionByID[strings.ToLower(a.ID)] = a
	call.ActionID = a.ID
	return s.actionReply(s.opts.OffboardStatus, *a, true)
}

// earlierOffboardsLocked reads a device's offboard actions at now: the
// latest one still Pending or InProgress, as read (nil: none), and
// whether one has succeeded, which stopped the device's sensor.
func (s *Server) earlierOffboardsLocked(mine []*MachineAction, now time.Time) (unfinished *MachineAction, stopped bool) {
	for i := len(mine) - 1; i >= 0; i-- {
		v := s.viewLocked(mine[i], now)
		switch v.Status {
		case StatusSucceeded:
			stopped = true
		case StatusPending, StatusInProgress:
			if unfinished == nil {
				unfinished = &v
			}
		}
	}
	return unfinished, stopped
}

// parseOffboardBody extracts the required, case-sensitive "Comment" field.
func parseOffboardBody(body []byte) (string, reply, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return "", errorReply(http.StatusBadRequest, "InvalidRequestBody", "Request body is not a valid JSON object."), false
	}
	raw, ok := fields["Comment"]
	if !ok || string(raw) == "null" {
		return "", errorReply(http.StatusBadRequest, "MissingRequiredParameter", "Comment is a required parameter."), false
	}
	var comment string
	if err := json.Unmarshal(raw, &comment); err != nil {
		return "", errorReply(http.StatusBadRequest, "InvalidRequestBody", "Comment must be a string."), false
	}
	if strings.TrimSpace(comment) == "" {
		return "", errorReply(http.StatusBadRequest, "MissingRequiredParameter", "Comment is a required parameter."), false
	}
	return comment, reply{}, true
}

func (s *Server) actionReply(status int, a MachineAction, fresh bool) reply {
	a.ODataContext = odataContextBase + "MachineActions/$entity"
	return reply{status: status, body: a.wire(fresh && s.opts.NullActionMachineFields && a.Status == StatusPending)}
}

// viewLocked returns the action as read at now: a Pending or InProgress
// action reads as Succeeded once Options.ActionCompleteAfter has passed
// since its creation (and not before it was last updated), unless its
// device had been offboarded before it (offboarding stops the sensor: the
// device does not come online to take it).
func (s *Server) viewLocked(a *MachineAction, now time.Time) MachineAction {
	v := *a
	unfinished := v.Status == StatusPending || v.Status == StatusInProgress
	if unfinished && s.opts.ActionCompleteAfter > 0 && !a.sensorStopped {
		done := v.CreationDateTimeUTC.Add(s.opts.ActionCompleteAfter)
		if done.Before(v.LastUpdateDateTimeUTC) {
			done = v.LastUpdateDateTimeUTC
		}
		if !now.Before(done) {
			v.Status = StatusSucceeded
			v.LastUpdateDateTimeUTC = done.UTC()
		}
	}
	return v
}

func (s *Server) findMachineLocked(tn *tenant, idOrName string) *Machine {
	if m := tn.machines[strings.ToLower(idOrName)]; m != nil {
		return m
	}
	var best *Machine
	for _, m := range tn.machineList {
		if strings.EqualFold(m.ComputerDNSName, idOrName) && (best == nil || m.LastSeen.After(best.LastSeen)) {
			best = m
		}
	}
	return best
}

func (s *Server) getMachineLocked(tn *tenant, idOrName string, call *Call) reply {
	m := s.findMachineLocked(tn, idOrName)
	if m == nil || s.chanceLocked(s.opts.Spurious404Rate) {
		return errorReply(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Machine %s was not found.", idOrName))
	}
	call.MachineID = m.ID
	return reply{status: http.StatusOK, body: servedMachine(m, odataContextBase+"Machines/$entity")}
}

type listQuery struct {
	filter    filterExpr
	top, skip int
	topGiven  bool // $top was given: without it, the whole list is asked for
}

// linksRest says whether an answer of size records at most, with more
// records left, links to them (@odata.nextLink): when it holds less than
// $top asked for, or there was no $top, which asks for the whole list.
func (q listQuery) linksRest(size int) bool {
	return !q.topGiven || size < q.top
}

// parseListQuery reads $filter, $top and $skip; other $-options are
// rejected and non-$ parameters ignored.
func parseListQuery(rawQuery string, sch schema) (listQuery, *reply) {
	q := listQuery{top: maxTop}
	bad := func(msg string) (listQuery, *reply) {
		rep := errorReply(http.StatusBadRequest, "ODataError", "The query specified in the URI is not valid. "+msg)
		return listQuery{}, &rep
	}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return bad("The query string could not be parsed.")
	}
	for k, v := range vals {
		if !strings.HasPrefix(k, "$") {
			continue
		}
		if len(v) > 1 {
			return bad(fmt.Sprintf("Query option '%s' was specified more than once, but it must be specified at most once.", k))
		}
		switch k {
		case "$filter":
			f, err := parseFilter(v[0], sch)
			if err != nil {
				return bad(err.Error() + ".")
			}
			q.filter = f
		case "$top", "$skip":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 0 {
				return bad(fmt.Sprintf("Invalid value '%s' for %s query option found.", v[0], k))
			}
			if k == "$skip" {
				q.skip = n
			} else if n > maxTop {
				return bad(fmt.Sprintf("The limit of '%d' for Top query has been exceeded. The value from the incoming request is '%d'.", maxTop, n))
			} else {
				q.top, q.topGiven = n, true
			}
		default:
			return bad(fmt.Sprintf("Query option '%s' is not supported.", k))
		}
	}
	return q, nil
}

// page is the part of n records the query's page holds, at most size.
func (q listQuery) page(n, size int) (from, to int) {
	from = min(q.skip, n)
	to = min(from+size, n)
	return from, to
}

type listBody struct {
	ODataContext string `json:"@odata.context"`
	Value        any    `json:"value"`
	NextLink     string `json:"@odata.nextLink,omitempty"`
}

// pageSize is the most records a list answer holds, whatever $top asks.
func (s *Server) pageSize() int {
	if s.opts.MaxPage > 0 {
		return s.opts.MaxPage
	}
	return maxTop
}

// nextLink is the link to the rest of a list that the server's page size
// cut short of what $top asked (server-driven paging, as OData writes
// it): the same query, $skip past the records answered and, when $top was
// given, $top less them.
func nextLink(r *http.Request, q listQuery, answered int) string {
	vals, _ := url.ParseQuery(r.URL.RawQuery) // parsed before: no error
	vals.Set("$skip", strconv.Itoa(q.skip+answered))
	if vals.Has("$top") {
		vals.Set("$top", strconv.Itoa(q.top-answered))
	}
	return baseURL(r) + r.URL.EscapedPath() + "?" + strings.ReplaceAll(vals.Encode(), "+", "%20")
}

func (s *Server) listMachinesLocked(tn *tenant, r *http.Request) reply {
	q, rep := parseListQuery(r.URL.RawQuery, machineSchema)
	if rep != nil {
		return *rep
	}
	// Only the page is written out: an inventory of 100,000 devices must
	// not cost 100,000 records per page.
	size := min(q.top, s.pageSize())
	out := []any{}
	matched, more := 0, false
	for _, m := range tn.machineList {
		if q.filter != nil && !q.filter(machineRecord(m)) {
			continue
		}
		if matched >= q.skip {
			if len(out) == size {
				more = true
				break
			}
			out = append(out, servedMachine(m, ""))
		}
		matched++
	}
	if len(out) == 0 && s.opts.EmptyMachineListNotFound {
		return errorReply(http.StatusNotFound, "NotFound", "No machines were found.")
	}
	if s.opts.ShuffleLists {
		// The page's devices only: the pages keep one order between
		// them, so $skip still reads each device once.
		s.rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	body := listBody{ODataContext: odataContextBase + "Machines", Value: out}
	if more && q.linksRest(size) {
		body.NextLink = nextLink(r, q, len(out))
	}
	return reply{status: http.StatusOK, body: body}
}

func machineRecord(m *Machine) record {
	return func(field string) any {
		switch field {
		case "id":
			return m.ID
		case "computerDnsName":
			return m.ComputerDNSName
		case "osPlatform":
			return m.OSPlatform
		case "healthStatus":
			return m.HealthStatus
		case "onboardingStatus":
			return m.OnboardingStatus
		case "lastSeen":
			return m.LastSeen
		case "rbacGroupId":
			return int64(m.RbacGroupID)
		}
		return nil
	}
}

func actionRecord(a *MachineAction) record {
	return func(field string) any {
		switch field {
		case "id":
			return a.ID
		case "status":
			return a.Status
		case "machineId":
			return a.MachineID
		case "type":
			return a.Type
		case "requestor":
			return a.Requestor
		case "creationDateTimeUtc":
			return a.CreationDateTimeUTC
		}
		return nil
	}
}

func (s *Server) getActionLocked(tn *tenant, id string, now time.Time, call *Call) reply {
	a := tn.actionByID[strings.ToLower(id)]
	if a == nil || !s.visibleLocked(a, now) {
		return errorReply(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("MachineAction %s was not found.", id))
	}
	call.ActionID = a.ID
	if other := s.otherActionLocked(tn, a); other != nil {
		a = other
	}
	return s.actionReply(http.StatusOK, s.viewLocked(a, now), false)
}

// visibleLocked reports whether an action shows in reads yet.
func (s *Server) visibleLocked(a *MachineAction, now time.Time) bool {
	return !now.Before(a.CreationDateTimeUTC.Add(s.opts.ActionVisibleAfter))
}

func (s *Server) listActionsLocked(tn *tenant, r *http.Request, now time.Time) reply {
	q, rep := parseListQuery(r.URL.RawQuery, actionSchema)
	if rep != nil {
		return *rep
	}
	var match []actionWire
	for i := len(tn.actions) - 1; i >= 0; i-- {
		if !s.visibleLocked(tn.actions[i], now) {
			continue
		}
		v := s.viewLocked(tn.actions[i], now)
		if q.filter == nil || q.filter(actionRecord(&v)) {
			match = append(match, v.wire(false))
		}
	}
	size := min(q.top, s.pageSize())
	from, to := q.page(len(match), size)
	out := match[from:to]
	if out == nil {
		out = []actionWire{}
	}
	if s.opts.ShuffleLists {
		// The page's actions only, as for devices: $top still reads the
		// newest, and $skip each action once.
		s.rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	body := listBody{ODataContext: odataContextBase + "MachineActions", Value: out}
	if to < len(match) && q.linksRest(size) {
		body.NextLink = nextLink(r, q, len(out))
	}
	return reply{status: http.StatusOK, body: body}
}

// Actions returns the tenant's machine actions in creation order, with
// their status as read now.
func (s *Server) Actions(tenantID string) []MachineAction {
	s.mu.Lock()
	defer s.mu.Unlock()
	tn := s.tenants[strings.ToLower(tenantID)]
	if tn == nil {
		return nil
	}
	now := s.clock.Now()
	out := make([]MachineAction, len(tn.actions))
	for i, a := range tn.actions {
		out[i] = s.viewLocked(a, now)
	}
	return out
}

// SetActionStatus sets the status of one of the tenant's actions, as the
// device or an operator would (for example Failed or Cancelled), and
// reports whether the action exists. A Cancelled action gets its
// cancellation fields set.
func (s *Server) SetActionStatus(tenantID, actionID, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	tn := s.tenants[strings.ToLower(tenantID)]
	if tn == nil {
		return false
	}
	a := tn.actionByID[strings.ToLower(actionID)]
	if a == nil {
		return false
	}
	now := s.clock.Now().UTC()
	a.Status = status
	a.LastUpdateDateTimeUTC = now
	if status == StatusCancelled {
		requestor, comment := "mdesim", "Cancelled by the simulator"
		a.CancellationRequestor, a.CancellationComment, a.CancellationDateTimeUTC = &requestor, &comment, &now
	}
	return true
}
