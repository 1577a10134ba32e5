// Command worker offboards devices from Microsoft Defender for Endpoint as
// requests arrive on NATS JetStream. See the README for the contract.
package main
