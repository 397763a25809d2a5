package testkit

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ServeA answers on pc, until the test ends, every A query for a name below
// zone (e.g. "ocnix.test.") with answer, authoritatively; other queries get
// an empty answer. It returns once the server is serving.
func ServeA(t testing.TB, pc net.PacketConn, zone, answer string) {
	t.Helper()
	mux := dns.NewServeMux()
	mux.HandleFunc(zone, func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + answer)
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("DNS server did not start")
	}
}
