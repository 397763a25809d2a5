package testkit

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// ToolCall is one call a scripted turn makes: the tool's name as opencode
// registers it and its arguments.
type ToolCall struct {
	Name string
	Args map[string]any
}

// Turn is one scripted answer of the fake model: tool calls, or, when Calls
// is empty, a final text that ends the agent loop.
type Turn struct {
	Calls []ToolCall
	Text  string
}

// ToolResult is what opencode sent back for one tool call.
type ToolResult struct {
	CallID  string
	Tool    string
	Content string
}

// FakeModel is an OpenAI-compatible chat completions server (POST
// /v1/chat/completions, streamed as SSE) that answers agent requests (those
// that offer tools) from a script, turn by turn, and records the tool
// results opencode sends back. Requests without tools (title and summary
// generation) get a short text and consume no turn.
type FakeModel struct {
	URL string // base URL, ending in /v1

	mu      sync.Mutex
	script  []Turn
	next    int
	names   map[string]string // call id → tool name
	results []ToolResult
	seen    map[string]bool
	tools   []string // tool names offered in the last agent request
	n       int
}

// StartFakeModel listens on a loopback port; the test's cleanup stops it.
func StartFakeModel(t testing.TB, script ...Turn) *FakeModel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFakeModel("http://"+ln.Addr().String()+"/v1", script...)
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

// NewFakeModel is a fake model whose caller serves it (it is an
// http.Handler) at url: the probe's serve-fake-model runs one as its own
// process where a test cannot start a goroutine, inside the systemd tier's
// container.
func NewFakeModel(url string, script ...Turn) *FakeModel {
	return &FakeModel{URL: url, script: script, names: map[string]string{}, seen: map[string]bool{}}
}

// Report is what GET /results answers: the recorded state of a fake model
// that runs in another process.
type Report struct {
	Results   []ToolResult
	Tools     []string
	Remaining int
}

// Add appends turns to the script.
func (f *FakeModel) Add(turns ...Turn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = append(f.script, turns...)
}

// Results is every tool result received so far, in order.
func (f *FakeModel) Results() []ToolResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ToolResult(nil), f.results...)
}

// Result is the result of the call with id, if it came back.
func (f *FakeModel) Result(id string) (ToolResult, bool) {
	for _, r := range f.Results() {
		if r.CallID == id {
			return r, true
		}
	}
	return ToolResult{}, false
}

// Tools is the tool names opencode offered in its last agent request.
func (f *FakeModel) Tools() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tools...)
}

// Remaining is how many scripted turns have not been served.
func (f *FakeModel) Remaining() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.script) - f.next
}

type chatRequest struct {
	Messages []struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCallID string          `json:"tool_call_id"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

// ServeHTTP answers POST …/chat/completions from the script and GET
// /results with a Report (JSON), for a test that cannot call the methods.
func (f *FakeModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/results" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Report{Results: f.Results(), Tools: f.Tools(), Remaining: f.Remaining()})
		return
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.NotFound(w, r)
		return
	}
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	turn := Turn{Text: "ok"}
	var ids []string
	if len(req.Tools) > 0 {
		f.tools = f.tools[:0]
		for _, t := range req.Tools {
			f.tools = append(f.tools, t.Function.Name)
		}
		for _, m := range req.Messages {
			if m.Role != "tool" || f.seen[m.ToolCallID] {
				continue
			}
			f.seen[m.ToolCallID] = true
			f.results = append(f.results, ToolResult{CallID: m.ToolCallID, Tool: f.names[m.ToolCallID], Content: contentText(m.Content)})
		}
		if f.next < len(f.script) {
			turn = f.script[f.next]
			f.next++
		} else {
			turn = Turn{Text: "script exhausted"}
		}
		for _, c := range turn.Calls {
			f.n++
			id := fmt.Sprintf("call_%d_%s", f.n, c.Name)
			if id2, ok := c.Args["_id"].(string); ok {
				id = id2
			}
			f.names[id] = c.Name
			ids = append(ids, id)
		}
	}
	f.mu.Unlock()

	w.Header().Set("Content-Type", "text/event-stream")
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	finish := "stop"
	if len(turn.Calls) == 0 {
		send(chunk(map[string]any{"role": "assistant", "content": turn.Text}, nil))
	} else {
		finish = "tool_calls"
		for i, c := range turn.Calls {
			args := map[string]any{}
			for k, v := range c.Args {
				if k != "_id" {
					args[k] = v
				}
			}
			a, _ := json.Marshal(args)
			send(chunk(map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{
				"index": i, "id": ids[i], "type": "function",
				"function": map[string]any{"name": c.Name, "arguments": string(a)},
			}}}, nil))
		}
	}
	end := chunk(map[string]any{}, finish)
	end["usage"] = map[string]any{"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
	send(end)
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// contentText flattens a message content (a string or a list of parts).
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) == nil {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return string(raw)
}
