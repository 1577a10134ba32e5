// Package deploy holds the deployment files and reads the PromQL in the
// dashboard, the alerts and the recording rules, so that tests can check
// every metric they name against the worker's /metrics.
package deploy
