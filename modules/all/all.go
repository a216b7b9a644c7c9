// Package all imports every built-in module so it registers into core.Default.
// A binary that wants the stock module set imports it for its side effects:
//
//	import _ "github.com/switchboard-dp/switchboard/modules/all"
//
// Programs that build their own host may import individual module packages
// instead, or none (see samples/custom).
package all

import (
	// Built-in modules, one import each. The list is finalised by the lead as
	// the modules land: res_kafka (modules/reskafka), cdr (modules/cdr),
	// cdr_kafka (modules/cdrkafka), res_policy (modules/respolicy),
	// policy_sync (modules/policysync) and pkt_engine (modules/pktengine) are
	// added once they register and build.
	_ "github.com/switchboard-dp/switchboard/modules/resprometheus"
)
