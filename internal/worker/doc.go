// Package worker joins the queue, the limiter and the Defender client: it
// takes each tenant's requests from JetStream as the quota allows, offboards
// the device, and publishes exactly one result per request.
package worker
