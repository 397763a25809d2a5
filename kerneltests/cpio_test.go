package kerneltests

import (
	"bufio"
	"fmt"
	"io"
	"sort"
)

// cpioEntry is one file of the initramfs: a regular file (data), a
// directory (mode has S_IFDIR) or a symlink (link set).
type cpioEntry struct {
	mode uint32 // permission bits and file type
	data []byte
	link string
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
)

// writeCPIO writes files as an uncompressed "newc" archive, the format the
// kernel unpacks into rootfs, in path order so that the same files give the
// same bytes (the cache key is their hash). Parents come before children.
func writeCPIO(w io.Writer, files map[string]cpioEntry) error {
	bw := bufio.NewWriter(w)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := uint32(1)
	rec := func(name string, e cpioEntry) {
		body := e.data
		if e.mode&0o170000 == sIFLNK {
			body = []byte(e.link)
		}
		nlink := 1
		if e.mode&0o170000 == sIFDIR {
			nlink = 2
		}
		fmt.Fprintf(bw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, nlink, 0, len(body), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		bw.WriteString(name)
		bw.WriteByte(0)
		pad(bw, 110+len(name)+1)
		bw.Write(body)
		pad(bw, len(body))
	}
	for _, n := range names {
		rec(n, files[n])
	}
	rec("TRAILER!!!", cpioEntry{})
	return bw.Flush()
}

func pad(w *bufio.Writer, n int) {
	for ; n%4 != 0; n++ {
		w.WriteByte(0)
	}
}
