package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ocnix/ocnix/internal/exitcode"
	"github.com/ocnix/ocnix/internal/safefs"
)

// lastSetupFile records how the last setup ended, in the private directory
// (privdir.go), so that run can refuse to start a server whose setup failed
// or never finished. Only root can write it.
const lastSetupFile = "last-setup.json"

// Results stored in lastSetupFile. Setup writes setupRunning first and
// setupOK or setupFailed at the end, so a setup killed half-way reads as
// not finished.
const (
	setupRunning = "running"
	setupOK      = "ok"
	setupFailed  = "failed"
)

// setupRecord is lastSetupFile's content. Reason never holds script output
// or anything from environmentFile: the instance can read this file.
type setupRecord struct {
	Result string    `json:"result"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason,omitempty"`
}

// record writes the last-setup record atomically.
func (h *hostApplier) record(result, reason string, id identity) error {
	rec := setupRecord{Result: result, Time: h.now().UTC().Truncate(time.Second), Reason: reason}
	b, err := json.Marshal(rec)
	if err != nil {
		return exitcode.Bugf("%w", fmt.Errorf("marshal setup record: %w", err))
	}
	if err := safefs.WriteFileAt(h.priv, lastSetupFile, append(b, '\n'), privateReadMode, &safefs.Owner{UID: 0, GID: id.gid}); err != nil {
		return fmt.Errorf("record setup result: %w", err)
	}
	return nil
}

// failureReason is the short, output-free form of a setup error.
func failureReason(err error) string {
	var se *scriptError
	if errors.As(err, &se) {
		return se.reason()
	}
	return err.Error()
}

// lastSetupFailed reports whether the last setup of the instance with layout
// l failed, did not finish or never ran, with a one-line reason for the error
// message. run calls it before starting the server, as root or as the
// instance user; preflight calls it as root.
//
// Only the root-owned record counts: a missing private directory or record
// means no setup completed since this release, and a record that is
// unreadable, malformed or not root's counts as failed.
func lastSetupFailed(l Layout) (bool, string, error) {
	priv, err := openPrivateDir(l.Private, -1)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return true, "no setup has completed (" + l.Private + " does not exist); run setup", nil
		}
		return true, err.Error(), nil
	}
	defer priv.Close()
	data, err := safefs.ReadTrustedFile(priv, lastSetupFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, fmt.Sprintf("no setup has completed (no %s/%s); run setup", l.Private, lastSetupFile), nil
	case err != nil:
		return true, fmt.Sprintf("the last setup record %s/%s cannot be trusted (%v); run setup again", l.Private, lastSetupFile, err), nil
	}
	var rec setupRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return true, fmt.Sprintf("the last setup record %s/%s is malformed; run setup again", l.Private, lastSetupFile), nil
	}
	when := rec.Time.Format(time.RFC3339)
	switch rec.Result {
	case setupOK:
		return false, "", nil
	case setupRunning:
		return true, "the setup started at " + when + " did not finish (it was killed, crashed or is still running); run setup again", nil
	case setupFailed:
		return true, "the setup at " + when + " failed: " + printable(rec.Reason, 300) + "; fix it and run setup again", nil
	}
	return true, fmt.Sprintf("the last setup record has the unknown result %s; run setup again", printable(rec.Result, 40)), nil
}

// printable makes text from a file the instance can write safe to print to a
// terminal or the journal: control characters (escape sequences, newlines
// that would forge a log line, "<0>" at a line start) are escaped, and the
// length is capped.
func printable(s string, max int) string {
	q := strconv.QuoteToGraphic(s)
	q = q[1 : len(q)-1]
	if len(q) > max {
		q = q[:max] + "…"
	}
	return q
}
