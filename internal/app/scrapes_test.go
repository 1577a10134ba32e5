package app

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// blockingCollector holds every scrape in Collect until release closes,
// counting those held on entered.
type blockingCollector struct {
	desc    *prometheus.Desc
	entered chan struct{}
	release chan struct{}
}

func (c *blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *blockingCollector) Collect(ch chan<- prometheus.Metric) {
	c.entered <- struct{}{}
	<-c.release
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1)
}

// TestScrapesAtOnceAreBounded: /metrics gathers at most maxScrapes
// scrapes side by side; one more is answered 503 at once. Before, every
// client's scrape was gathered at the same time, each some megabytes at
// thousands of tenants.
func TestScrapesAtOnceAreBounded(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}})
	c := &blockingCollector{
		desc:    prometheus.NewDesc("test_blocking", "holds a scrape", nil, nil),
		entered: make(chan struct{}, maxScrapes+1),
		release: make(chan struct{}),
	}
	e.app.reg.MustRegister(c)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(c.release) }) }
	t.Cleanup(release) // before the worker's stop, which waits for the scrapes
	url := "http://" + e.app.HTTPAddr() + "/metrics"
	var wg sync.WaitGroup
	codes := make(chan int, maxScrapes)
	for range maxScrapes {
		wg.Go(func() {
			resp, err := http.Get(url)
			if err != nil {
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	for i := range maxScrapes {
		select {
		case <-c.entered:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d scrapes gathered after 20s", i, maxScrapes)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %d while %d were gathered: %v, want 503 at once", maxScrapes+1, maxScrapes, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("scrape %d while %d were gathered: %s, want 503", maxScrapes+1, maxScrapes, resp.Status)
	}
	release()
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a scrape within the bound answered %d", code)
		}
	}
}
