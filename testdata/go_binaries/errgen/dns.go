package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
)

// net's pure Go resolver, talking to errgen's own DNS server over a pipe
// (no network): the A answer is too short, so goLookupIPCNAMEOrder builds a
// *net.DNSError into lastErr inside its answer loop; the AAAA answer gives
// an address, so the lookup succeeds and drops that error. The planner
// probes that new object at its reference; the truth test counts one
// DNSError per call.
//
// dns_servfail: every TXT query gets SERVFAIL, so net's tryOneName builds a
// *net.DNSError into lastErr on each attempt of each server and goes on
// (`lastErr = newDNSError(…); continue`, a loop's phi); the lookup returns
// the last one. errgen wraps it, so the truth test counts the resolver's
// DNSErrors against the SERVFAIL answers sent ("dns_servfail_answers").
var dnsScenarios = []scenario{
	{"dns_bad_answer", siteDNSBadAnswer, 31},
	{"dns_servfail", siteDNSServfail, 3},
}

const dnsName = "errgen.example."

// The server the resolver asked last (from resolv.conf, or its default):
// the DNSError names it. Reported as "dns_server"; every server asked, in
// order, as "dns_servers" (without nameservers the resolver tries two).
var (
	dnsMu      sync.Mutex
	dnsServer  string
	dnsServers []string
	// SERVFAIL answers sent: one DNSError each.
	dnsServfails int
)

const dnsServfailName = "servfail.errgen.example."

//go:noinline
func siteDNSServfail(i int) error {
	r := &net.Resolver{PreferGo: true, Dial: dialFakeDNS}
	txt, err := r.LookupTXT(context.Background(), dnsServfailName)
	if err != nil {
		return fmt.Errorf("errgen: servfail: %w", err)
	}
	return fmt.Errorf("errgen: dns answered %q", txt)
}

//go:noinline
func siteDNSBadAnswer(i int) error {
	r := &net.Resolver{PreferGo: true, Dial: dialFakeDNS}
	cname, err := r.LookupCNAME(context.Background(), dnsName)
	if err != nil {
		return err
	}
	return fmt.Errorf("errgen: dns answered %s", cname)
}

func dialFakeDNS(ctx context.Context, network, address string) (net.Conn, error) {
	dnsMu.Lock()
	dnsServer = address
	seen := false
	for _, a := range dnsServers {
		seen = seen || a == address
	}
	if !seen {
		dnsServers = append(dnsServers, address)
	}
	dnsMu.Unlock()
	client, server := net.Pipe()
	go answerDNS(server)
	return client, nil
}

// answerDNS answers one query framed as on TCP (a two-byte length first:
// the resolver frames so on any conn that is not a PacketConn).
func answerDNS(c net.Conn) {
	defer c.Close()
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return
	}
	q := make([]byte, int(n[0])<<8|int(n[1]))
	if _, err := io.ReadFull(c, q); err != nil || len(q) < 12 {
		return
	}
	end := 12 // the question: labels, the root, QTYPE, QCLASS
	for end < len(q) && q[end] != 0 {
		end += int(q[end]) + 1
	}
	end += 5
	if end > len(q) {
		return
	}
	qtype := uint16(q[end-4])<<8 | uint16(q[end-3])
	if qtype == 16 { // TXT: SERVFAIL (QR+RD, RA with RCODE 2), no answer
		m := append([]byte{q[0], q[1], 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:end]...)
		dnsMu.Lock()
		dnsServfails++
		dnsMu.Unlock()
		c.Write(append([]byte{byte(len(m) >> 8), byte(len(m))}, m...))
		return
	}
	// ID, QR+RD, RA, one question, one answer.
	m := append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}, q[12:end]...)
	// The answer's owner is the question's name (a pointer to it), class IN.
	m = append(m, 0xc0, 12, byte(qtype>>8), byte(qtype), 0, 1, 0, 0, 0, 60)
	switch qtype {
	case 1: // A with two bytes of data: skipping it works, reading it fails
		m = append(m, 0, 2, 127, 0)
	case 28: // AAAA: ::1
		m = append(m, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
	default: // CNAME (newer releases ask too): the name itself
		m = append(m, 0, 2, 0xc0, 12)
	}
	c.Write(append([]byte{byte(len(m) >> 8), byte(len(m))}, m...))
}
