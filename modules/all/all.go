// Package all imports every built-in module so it registers into core.Default.
// A binary that wants the stock module set imports it for its side effects:
//
//	import _ "github.com/switchboard-dp/switchboard/modules/all"
//
// Programs that build their own host may import individual module packages
// instead, or none (see samples/custom).
package all

import (
	// Built-in modules, one import each (the lead keeps this list final).
	_ "github.com/switchboard-dp/switchboard/modules/cdr"           // cdr
	_ "github.com/switchboard-dp/switchboard/modules/cdrfile"       // cdr_file
	_ "github.com/switchboard-dp/switchboard/modules/cdrkafka"      // cdr_kafka
	_ "github.com/switchboard-dp/switchboard/modules/dnsfirewall"   // dns_firewall
	_ "github.com/switchboard-dp/switchboard/modules/pktengine"     // pkt_engine
	_ "github.com/switchboard-dp/switchboard/modules/policysync"    // policy_sync
	_ "github.com/switchboard-dp/switchboard/modules/reskafka"      // res_kafka
	_ "github.com/switchboard-dp/switchboard/modules/respolicy"     // res_policy
	_ "github.com/switchboard-dp/switchboard/modules/resprometheus" // res_prometheus
)
