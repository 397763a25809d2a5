package launcher

// Placeholders until the sandbox and netpolicy plans are wired in.

type SandboxSection struct {
	Note string `json:"note"`
}

func (s SandboxSection) String() string { return s.Note }

type NetworkSection struct {
	Enabled bool   `json:"enabled"`
	Note    string `json:"note"`
}

func (n NetworkSection) String() string { return n.Note }

func buildSandbox(s *Spec, h Host) (SandboxSection, error) {
	return SandboxSection{Note: "not yet wired"}, nil
}

func buildNetwork(s *Spec) (NetworkSection, error) {
	return NetworkSection{Enabled: s.NetworkIsolation.Enable, Note: "not yet wired"}, nil
}
