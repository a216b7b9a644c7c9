package metrics

import (
	"io"
	"math"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	testGauge   = prometheus.NewDesc("test_gauge", "A gauge.", []string{"l"}, nil)
	testUp      = prometheus.NewDesc("test_up", "A boolean gauge.", []string{"l"}, nil)
	testCounter = prometheus.NewDesc("test_total", "A counter.", []string{"kind"}, nil)
	testPlain   = prometheus.NewDesc("test_plain_total", "A counter without labels.", nil, nil)
)

// collector uses Descs and Sink as the modules do.
type collector struct{}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	Descs{testGauge, testUp, testCounter, testPlain}.Describe(ch)
}

func (collector) Collect(ch chan<- prometheus.Metric) {
	out := Sink(ch)
	out.Gauge(testGauge, 1.5, "a")
	out.GaugeBool(testUp, true, "yes")
	out.GaugeBool(testUp, false, "no")
	out.Counter(testCounter, 0.25, "float")
	out.CounterInt(testCounter, 3, "int")
	out.CounterUint(testCounter, math.MaxUint64, "uint")
	out.CounterUint(testPlain, 7)
}

// The pedantic registry checks every collected metric against the described
// ones; the scrape shows the values exactly as MustNewConstMetric makes them.
func TestCollectorScrape(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector{})
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got, _ := io.ReadAll(rec.Body)
	want := `# HELP test_gauge A gauge.
# TYPE test_gauge gauge
test_gauge{l="a"} 1.5
# HELP test_plain_total A counter without labels.
# TYPE test_plain_total counter
test_plain_total 7
# HELP test_total A counter.
# TYPE test_total counter
test_total{kind="float"} 0.25
test_total{kind="int"} 3
test_total{kind="uint"} 1.8446744073709552e+19
# HELP test_up A boolean gauge.
# TYPE test_up gauge
test_up{l="no"} 0
test_up{l="yes"} 1
`
	if string(got) != want {
		t.Fatalf("scrape:\n%s\nwant:\n%s", got, want)
	}
}

// Describe sends the descriptions in their order.
func TestDescsDescribe(t *testing.T) {
	ds := Descs{testGauge, testUp, testCounter}
	ch := make(chan *prometheus.Desc, len(ds))
	ds.Describe(ch)
	close(ch)
	i := 0
	for d := range ch {
		if d != ds[i] {
			t.Fatalf("description %d: %v, want %v", i, d, ds[i])
		}
		i++
	}
	if i != len(ds) {
		t.Fatalf("%d descriptions, want %d", i, len(ds))
	}
}
