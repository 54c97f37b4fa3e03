// go-cli [DIR]: prints the SHA-256 and size of every regular file below DIR (default /data),
// in path order, then the file count and total size: a small `sha256sum -r`.
//
// Built with Debian trixie's Go 1.24 for GOOS=wasip1 GOARCH=wasm (a WASI preview 1 module).
// DIR exists for the module only if the profile grants it (`mounts = ["/data"]`); without the
// grant the walk fails and go-cli exits 1.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

func digest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func main() {
	dir := "/data"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	var count int
	var total int64
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !entry.Type().IsRegular() {
			return nil
		}
		sum, size, err := digest(path)
		if err != nil {
			return err
		}
		fmt.Printf("%s  %8d  %s\n", sum, size, path)
		count++
		total += size
		return nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-cli: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("go-cli: %d files, %d bytes in %s\n", count, total, dir)
}
