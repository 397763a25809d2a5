//go:build linux

package netpolicy

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a helper process, selected by this variable:
// "ensure" runs Ensure (so a test can kill -9 it half-way) and "enter"
// runs Enter on a locked thread and reports what it sees from inside.
const helperEnv = "OCNIX_NETPOLICY_HELPER"

func TestMain(m *testing.M) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		os.Exit(m.Run())
	}
	var p Plan
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv+"_PLAN")), &p); err != nil {
		fmt.Fprintln(os.Stderr, "helper: plan:", err)
		os.Exit(2)
	}
	switch mode {
	case "pin": // only the namespace and its pin, from wherever the helper was started
		if h := os.Getenv(helperEnv + "_HOSTMNT"); h != "" {
			hostMountNS = h
		}
		if err := ensureNetns(p.NetnsPath); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
	case "ensure":
		if err := Ensure(p); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
	case "verify":
		if err := Verify(p); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("ok")
	case "enter":
		runtime.LockOSThread()
		if err := Enter(p); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		report := map[string]string{}
		report["verify"] = errString(Verify(p))
		b, err := os.ReadFile("/etc/resolv.conf")
		report["resolv"] = string(b)
		if err != nil {
			report["resolv"] = err.Error()
		}
		for _, k := range []string{"allowed", "blocked"} {
			c, err := net.DialTimeout("tcp", os.Getenv(helperEnv+"_"+strings.ToUpper(k)), 2*time.Second)
			if err == nil {
				c.Close()
			}
			report[k] = errString(err)
		}
		json.NewEncoder(os.Stdout).Encode(report)
	}
	os.Exit(0)
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// helperCmd returns a command that re-runs the test binary in helper mode.
func helperCmd(t testing.TB, mode string, p Plan, env ...string) *exec.Cmd {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_PLAN="+string(b))
	cmd.Env = append(cmd.Env, env...)
	return cmd
}
