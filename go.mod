module github.com/switchboard-dp/switchboard

go 1.26.8

require (
	github.com/abiosoft/ishell/v2 v2.0.2
	github.com/abiosoft/readline v0.0.0-20180607040430-155bce2042db
	github.com/confluentinc/confluent-kafka-go/v2 v2.11.1
	github.com/flier/gohs v1.2.2
	github.com/go-ini/ini v1.67.0
	github.com/google/gopacket v1.1.19
	github.com/miekg/dns v1.1.73
	github.com/prometheus/client_golang v1.23.2
	github.com/prometheus/client_model v0.6.2
	github.com/twmb/franz-go v1.22.2
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	github.com/twmb/franz-go/pkg/kmsg v1.15.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/coreos/go-systemd/v22 v22.5.0
	github.com/creack/pty v1.1.24 // indirect
	github.com/fatih/color v1.12.0 // indirect
	github.com/flynn-archive/go-shlex v0.0.0-20150515145356-3f9db97f8568 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/mattn/go-colorable v0.1.13 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/prometheus/common v0.66.1 // indirect
	github.com/prometheus/procfs v0.16.1 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	golang.org/x/net v0.57.0
	golang.org/x/sys v0.47.0
	google.golang.org/protobuf v1.36.8 // indirect
)
