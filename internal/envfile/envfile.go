// Package envfile reads systemd EnvironmentFile= syntax, for
// environmentFile: the values are secrets, so every error names the file
// and line, never a value.
package envfile

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/ocnix/ocnix/internal/safefs"
)

// NameRe is what a variable name may be, in an environment file and in the
// spec's environment alike.
var NameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Var is one assignment from an environment file, with the line it came from.
type Var struct {
	Name  string
	Value string
	Line  int
}

// ErrFile marks a problem with environmentFile: missing, unreadable or malformed.
var ErrFile = errors.New("environmentFile")

// MaxSize bounds an environment file: a few KiB in practice, and root must
// not be made to read without end.
const MaxSize = 1 << 20

// Read reads an environment file with systemd's EnvironmentFile= syntax.
// It is read at run time only: its values are secrets and never enter the Nix
// store, logs or explain output. Errors name the file and line, never a value.
//
// As root, the file is opened the way root opens anything it reads for an
// instance (safefs.OpenTrustedPath): through root-owned parents, following
// only root's links, a regular file only. A file in a tree the instance can
// write is refused, since the instance could swap it for a symlink to any
// root-only file. Any other caller (run as the instance user under systemd
// User=, reading its LoadCredential= copy) gains nothing by a link and reads
// the path as it is, but still only a regular file of bounded size, so that
// a FIFO or /dev/zero cannot hang it.
func Read(path string) ([]Var, error) {
	var data []byte
	var err error
	if os.Geteuid() == 0 {
		data, err = safefs.ReadTrustedPath(path, MaxSize)
	} else {
		data, err = safefs.ReadRegularFile(path, MaxSize)
	}
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%w %s does not exist; create it or set environmentFile to null: %w", ErrFile, path, err)
		case errors.Is(err, safefs.ErrUntrusted) || errors.Is(err, safefs.ErrNotRegular):
			return nil, fmt.Errorf("%w %s is refused: %w", ErrFile, path, err)
		}
		return nil, fmt.Errorf("%w %s cannot be read (it must be a regular file of at most %d bytes, readable by the user that starts the launcher): %w", ErrFile, path, MaxSize, err)
	}
	vars, err := Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrFile, path, err)
	}
	return vars, nil
}

// Parse parses systemd EnvironmentFile= syntax, as systemd's
// parse_env_file does:
//   - blank lines and lines starting with '#' or ';' are ignored;
//   - KEY=VALUE, whitespace around the key and before the value is skipped;
//   - unquoted values: a backslash escapes the next character, a backslash at the
//     end of a line joins the next line, trailing whitespace is removed;
//   - 'single quotes' are literal; "double quotes" honour \" \\ \` \$ and a
//     backslash-newline; quoted and unquoted parts concatenate;
//   - no variable expansion happens.
//
// It is stricter than systemd where systemd silently ignores a line: a line
// without '=', an invalid variable name, "export KEY=…" and an unterminated
// quote are errors, because a secret that is silently dropped is worse than a
// service that refuses to start with the line number in the message.
func Parse(text string) ([]Var, error) {
	p := envParser{src: text, line: 1}
	return p.parse()
}

type envParser struct {
	src  string
	pos  int
	line int
}

func (p *envParser) eof() bool { return p.pos >= len(p.src) }

func (p *envParser) next() byte {
	c := p.src[p.pos]
	p.pos++
	if c == '\n' {
		p.line++
	}
	return c
}

func (p *envParser) parse() ([]Var, error) {
	var out []Var
	for !p.eof() {
		// Skip leading whitespace and blank lines.
		c := p.src[p.pos]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			p.next()
			continue
		}
		if c == '#' || c == ';' {
			p.skipComment()
			continue
		}
		start := p.line
		key, ok := p.readKey()
		if !ok {
			return nil, fmt.Errorf("line %d has no '='; write KEY=VALUE (comments start with '#')", start)
		}
		if k, found := strings.CutPrefix(key, "export "); found {
			return nil, fmt.Errorf("line %d uses 'export', which systemd does not understand; write %s=… without it", start, clip(strings.TrimSpace(k)))
		}
		if !NameRe.MatchString(key) {
			return nil, fmt.Errorf("line %d: the variable name is not valid (the text is not shown: it may be a secret); use letters, digits and '_', not starting with a digit", start)
		}
		val, err := p.readValue()
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", start, key, err)
		}
		out = append(out, Var{Name: key, Value: val, Line: start})
	}
	return out, nil
}

// skipComment skips to the end of the line. Like systemd, a backslash before
// the newline continues the comment onto the next line.
func (p *envParser) skipComment() {
	for !p.eof() {
		c := p.next()
		if c == '\\' && !p.eof() {
			p.next()
			continue
		}
		if c == '\n' {
			return
		}
	}
}

// readKey reads up to '=' on the current line; false if the line has none.
func (p *envParser) readKey() (string, bool) {
	var b strings.Builder
	for !p.eof() {
		c := p.src[p.pos]
		if c == '\n' {
			return strings.TrimSpace(b.String()), false
		}
		p.next()
		if c == '=' {
			return strings.TrimRight(b.String(), " \t\r"), true
		}
		b.WriteByte(c)
	}
	return strings.TrimSpace(b.String()), false
}

func (p *envParser) readValue() (string, error) {
	var b strings.Builder
	// Whitespace between '=' and the value is not part of it.
	for !p.eof() && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.next()
	}
	// trailing counts unquoted trailing whitespace, removed at the end of line.
	trailing := 0
	for !p.eof() {
		c := p.next()
		switch c {
		case '\n':
			return b.String()[:b.Len()-trailing], nil
		case '\'':
			trailing = 0
			start := p.line
			for {
				if p.eof() {
					return "", fmt.Errorf("single quote opened on line %d is never closed", start)
				}
				c := p.next()
				if c == '\'' {
					break
				}
				b.WriteByte(c)
			}
		case '"':
			trailing = 0
			start := p.line
			for {
				if p.eof() {
					return "", fmt.Errorf("double quote opened on line %d is never closed", start)
				}
				c := p.next()
				if c == '"' {
					break
				}
				if c == '\\' && !p.eof() {
					n := p.next()
					switch n {
					case '\n':
					case '"', '\\', '`', '$':
						b.WriteByte(n)
					default:
						b.WriteByte('\\')
						b.WriteByte(n)
					}
					continue
				}
				b.WriteByte(c)
			}
		case '\\':
			trailing = 0
			if p.eof() {
				continue
			}
			if n := p.next(); n != '\n' {
				b.WriteByte(n)
			}
		case ' ', '\t', '\r':
			trailing++
			b.WriteByte(c)
		default:
			trailing = 0
			b.WriteByte(c)
		}
	}
	return b.String()[:b.Len()-trailing], nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
