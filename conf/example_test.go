package conf_test

import (
	"fmt"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
)

// Connection is shared by several modules' configs, which embed it.
type Connection struct {
	Brokers []string          `conf:"brokers" required:"true"`
	Timeout time.Duration     `conf:"timeout" default:"5s" min:"100ms"`
	Options map[string]string `conf:"rdkafka.*"` // passed through to librdkafka
}

// Producer is one module's config for a section.
type Producer struct {
	Connection
	Compression string `conf:"compression" enum:"none|gzip|snappy|lz4|zstd" default:"none"`
	LingerMS    int    `conf:"linger_ms" default:"5" min:"0" max:"900000"`
}

func ExampleDecode() {
	f, err := conf.Parse("kafka.conf", []byte(`
[defaults](!)              ; a template
brokers = k1:9092
brokers = k2:9092          ; repeated keys build a list
rdkafka.socket.keepalive.enable = true

[cdr](defaults)
compression => LZ4
linger_ms = 50

[bad](defaults)
compresion = gzip
linger_ms = 1000000
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	var p Producer
	if err := conf.Decode(f.Section("cdr"), &p); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Brokers, p.Timeout, p.Compression, p.LingerMS, p.Options)

	err = conf.Decode(f.Section("bad"), &p)
	fmt.Println(err)
	// Output:
	// [k1:9092 k2:9092] 5s lz4 50 map[socket.keepalive.enable:true]
	// kafka.conf:12: [bad] compresion: unknown key "compresion" (did you mean "compression"?)
	// kafka.conf:13: [bad] linger_ms: 1000000 out of range 0..900000
}
