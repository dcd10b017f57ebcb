// qmp-driver: drives a QMP server with go-qemu (github.com/digitalocean/go-qemu/qmp), a client
// no one in this project wrote. It reads one step per line on stdin and answers one JSON line per
// step on stdout, so the e2e test can look at the guest between steps:
//
//	status | stop | cont | powerdown | version
//	add <id> <image>      blockdev-add + device_add virtio-blk-pci drive=<id>-drive
//	del <id>              device_del, then waits for DEVICE_DELETED of <id>
//	wait <EVENT> <secs>   waits for an event
//	probe <type>          what libvirt asks first, through go-qemu's typed raw API (its structs
//	                      are generated from QEMU's schema, so a wrong shape fails to decode)
//	reset                 system_reset through the raw API
//
// Built offline against Debian's golang-github-digitalocean-go-qemu-dev (GOPATH=/usr/share/gocode,
// GO111MODULE=off).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"context"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: qmp-driver <socket>")
		os.Exit(2)
	}
	mon, err := qmp.NewSocketMonitor("unix", os.Args[1], 10*time.Second)
	if err != nil {
		fail("connect", err)
	}
	if err := mon.Connect(); err != nil {
		fail("negotiate", err)
	}
	defer mon.Disconnect()
	// go-qemu's listener blocks on an unread event channel: drain it into a buffered one.
	stream, err := mon.Events(context.Background())
	if err != nil {
		fail("events", err)
	}
	events := make(chan qmp.Event, 1024)
	go func() {
		for e := range stream {
			events <- e
		}
		close(events)
	}()
	say(map[string]interface{}{"step": "negotiated", "version": mon.Version.String()})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "status":
			say(run(mon, "query-status", nil))
		case "version":
			say(run(mon, "query-version", nil))
		case "stop":
			say(run(mon, "stop", nil))
		case "cont":
			say(run(mon, "cont", nil))
		case "powerdown":
			say(run(mon, "system_powerdown", nil))
		case "add":
			r := run(mon, "blockdev-add", map[string]interface{}{
				"driver": "raw", "node-name": f[1] + "-drive", "read-only": true,
				"file": map[string]interface{}{"driver": "file", "filename": f[2]},
			})
			if r["error"] != nil {
				say(r)
				continue
			}
			say(run(mon, "device_add", map[string]interface{}{
				"driver": "virtio-blk-pci", "id": f[1], "drive": f[1] + "-drive", "bus": "pci",
			}))
		case "del":
			r := run(mon, "device_del", map[string]interface{}{"id": f[1]})
			if r["error"] != nil {
				say(r)
				continue
			}
			say(wait(events, "DEVICE_DELETED", 300, f[1]))
		case "probe":
			say(probe(raw.NewMonitor(mon), f[1]))
		case "reset":
			if err := raw.NewMonitor(mon).SystemReset(); err != nil {
				say(map[string]interface{}{"command": "system_reset", "error": err.Error()})
			} else {
				say(map[string]interface{}{"command": "system_reset", "return": map[string]interface{}{}})
			}
		case "wait":
			secs, _ := strconv.Atoi(f[2])
			say(wait(events, f[1], secs, ""))
		default:
			say(map[string]interface{}{"error": "unknown step " + f[0]})
		}
	}
}

// run sends one command through go-qemu's SocketMonitor.Run and returns the decoded answer
// ({"return": ...} or {"error": "..."}).
func run(mon *qmp.SocketMonitor, command string, args map[string]interface{}) map[string]interface{} {
	cmd := map[string]interface{}{"execute": command}
	if args != nil {
		cmd["arguments"] = args
	}
	b, _ := json.Marshal(cmd)
	out, err := mon.Run(b)
	if err != nil {
		return map[string]interface{}{"command": command, "error": err.Error()}
	}
	var v map[string]interface{}
	if err := json.Unmarshal(out, &v); err != nil {
		return map[string]interface{}{"command": command, "error": err.Error()}
	}
	v["command"] = command
	return v
}

// probe asks what libvirt's capability probe asks and reports what go-qemu decoded.
func probe(r *raw.Monitor, typename string) map[string]interface{} {
	out := map[string]interface{}{}
	fault := func(what string, err error) map[string]interface{} {
		return map[string]interface{}{"error": what + ": " + err.Error()}
	}
	schema, err := r.QueryQMPSchema()
	if err != nil {
		return fault("query-qmp-schema", err)
	}
	commands, events := []string{}, []string{}
	for _, i := range schema {
		switch v := i.(type) {
		case raw.SchemaInfoCommand:
			commands = append(commands, v.Name)
		case raw.SchemaInfoEvent:
			events = append(events, v.Name)
		}
	}
	out["commands"], out["events"] = commands, events
	kvm, err := r.QueryKVM()
	if err != nil {
		return fault("query-kvm", err)
	}
	out["kvm"] = kvm
	target, err := r.QueryTarget()
	if err != nil {
		return fault("query-target", err)
	}
	out["arch"] = target.Arch
	machines, err := r.QueryMachines()
	if err != nil {
		return fault("query-machines", err)
	}
	out["machines"] = machines
	cpus, err := r.QueryCPUDefinitions()
	if err != nil {
		return fault("query-cpu-definitions", err)
	}
	out["cpus"] = cpus
	types, err := r.QomListTypes(nil, nil)
	if err != nil {
		return fault("qom-list-types", err)
	}
	names := []string{}
	for _, t := range types {
		names = append(names, t.Name)
	}
	out["types"] = names
	props, err := r.DeviceListProperties(typename)
	if err != nil {
		return fault("device-list-properties", err)
	}
	out["properties"] = props
	status, err := r.HumanMonitorCommand("info status", nil)
	if err != nil {
		return fault("human-monitor-command", err)
	}
	out["hmp"] = status
	chardevs, err := r.QueryChardev()
	if err != nil {
		return fault("query-chardev", err)
	}
	out["chardevs"] = chardevs
	uuid, err := r.QueryUUID()
	if err != nil {
		return fault("query-uuid", err)
	}
	out["uuid"] = uuid.UUID
	return map[string]interface{}{"return": out}
}

func wait(events <-chan qmp.Event, name string, secs int, device string) map[string]interface{} {
	deadline := time.After(time.Duration(secs) * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return map[string]interface{}{"error": "the connection closed before " + name}
			}
			if e.Event == name && (device == "" || e.Data["device"] == device) {
				return map[string]interface{}{"event": e.Event, "data": e.Data, "seconds": e.Timestamp.Seconds}
			}
		case <-deadline:
			return map[string]interface{}{"error": fmt.Sprintf("no %s within %d s", name, secs)}
		}
	}
}

func say(v map[string]interface{}) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "qmp-driver: %s: %v\n", step, err)
	os.Exit(1)
}
