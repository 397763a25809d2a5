//go:build linux

package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/ocnix/ocnix/internal/testkit"
)

// fakeModelVerbs serve testkit's fake OpenAI-compatible model as a process of
// its own: the systemd tier's agent scenario runs it inside the container,
// where a test cannot start a goroutine, as a host user.
var fakeModelVerbs = map[string]Verb{
	// serve-fake-model ADDR SCRIPT: answers agent requests on ADDR (its
	// base URL is http://ADDR/v1) from SCRIPT, a JSON list of testkit.Turn,
	// and GET /results with a testkit.Report. Prints "listening" once bound.
	"serve-fake-model": func(a []string) (string, error) {
		if len(a) != 2 {
			return "", errors.New("usage: serve-fake-model ADDR SCRIPT.json")
		}
		b, err := os.ReadFile(a[1])
		if err != nil {
			return "", err
		}
		var script []testkit.Turn
		if err := json.Unmarshal(b, &script); err != nil {
			return "", fmt.Errorf("serve-fake-model: %s: %w", a[1], err)
		}
		l, err := net.Listen("tcp", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		fmt.Println("listening")
		return "", http.Serve(l, testkit.NewFakeModel("http://"+a[0]+"/v1", script...))
	},
}
