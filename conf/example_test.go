package conf_test

import (
	"fmt"
	"strconv"
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

// PolicyGeneral is the [general] section of a module's file.
type PolicyGeneral struct {
	DefaultGroup string `conf:"default_group"`
	Journal      bool   `conf:"journal" default:"no"`
	OnQueueFull  string `conf:"on_queue_full" enum:"drop|block|spool" default:"drop"`
}

// PolicyConfig is the whole file: a [general] section decoded into a struct
// and a free-form [groups] section mapping group names to ids.
type PolicyConfig struct {
	General PolicyGeneral `section:"general"`
	Groups  *conf.Section `section:"groups"` // nil when the file has none
}

// Validate checks the rules that span keys and sections, reporting each
// problem at the key it is about.
func (c *PolicyConfig) Validate(f *conf.File) error {
	var errs conf.Errors
	if c.General.Journal && c.General.OnQueueFull != "spool" {
		errs.At(f, "general", "journal", "journal = yes needs on_queue_full = spool")
	}
	known := c.General.DefaultGroup == ""
	if c.Groups != nil {
		for _, k := range c.Groups.Keys {
			if id, err := strconv.ParseUint(k.Value, 10, 32); err != nil || id == 0 {
				errs.Add(c.Groups, k, "group id %q: want a number from 1", k.Value)
			}
			known = known || k.Name == c.General.DefaultGroup
		}
	}
	if !known {
		errs.At(f, "general", "default_group", "group %q is not in [groups]", c.General.DefaultGroup)
	}
	return errs.Err()
}

func ExampleDecodeFile() {
	good, _ := conf.Parse("res_policy.conf", []byte(`
[general]
default_group = staff

[groups]
staff = 10
guests => 20
`))
	var c PolicyConfig
	if err := conf.DecodeFile(good, &c); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.General.DefaultGroup, c.General.OnQueueFull, len(c.Groups.Keys))

	// No file at all: every section is absent, defaults apply.
	var none PolicyConfig
	fmt.Println(conf.DecodeFile(nil, &none), none.General.OnQueueFull, none.Groups == nil)

	bad, _ := conf.Parse("res_policy.conf", []byte(`
[general]
journal = yes
default_group = admins

[groups]
staff = ten

[group]
`))
	fmt.Println(conf.DecodeFile(bad, &c)) // an unknown section stops before Validate

	bad, _ = conf.Parse("res_policy.conf", []byte(`
[general]
journal = yes
default_group = admins

[groups]
staff = ten
`))
	fmt.Println(conf.DecodeFile(bad, &c))
	fmt.Println(c.General.DefaultGroup) // unchanged by the failed calls
	// Output:
	// staff drop 2
	// <nil> drop true
	// res_policy.conf:9: [group]: unknown section (want [general] or [groups])
	// res_policy.conf:3: [general] journal: journal = yes needs on_queue_full = spool
	// res_policy.conf:4: [general] default_group: group "admins" is not in [groups]
	// res_policy.conf:7: [groups] staff: group id "ten": want a number from 1
	// staff
}
