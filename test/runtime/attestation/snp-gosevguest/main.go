// snp-gosevguest: verifies an SEV-SNP report with google/go-sev-guest, as an independent reference for
// test/attestation/snp-reference.test.ts. Prints one JSON line {"ok": bool, "error": "..."}; exit 0 either way.
//
//	-report FILE   0x4A0-byte report
//	-certs FILE    extended-report certificate table (parsed with go-sev-guest's abi.CertTable), or
//	-vek FILE -ca FILE   VEK (DER/PEM) and a PEM bundle with ASK/ASVK/ARK
//	-roots FILE    PEM bundle (ARK, ASK, ASVK) to trust instead of go-sev-guest's embedded AMD roots
//	-product NAME  Milan|Genoa|Turin (v2 reports)
//	-now RFC3339   verification time
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

func derBlocks(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(data), "-----BEGIN") {
		return [][]byte{data}, nil
	}
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, nil
		}
		out = append(out, b.Bytes)
	}
}

func cn(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	return c.Subject.CommonName
}

func run() error {
	reportPath := flag.String("report", "", "")
	certsPath := flag.String("certs", "", "")
	vekPath := flag.String("vek", "", "")
	caPath := flag.String("ca", "", "")
	rootsPath := flag.String("roots", "", "")
	product := flag.String("product", "", "")
	now := flag.String("now", "", "")
	flag.Parse()

	raw, err := os.ReadFile(*reportPath)
	if err != nil {
		return err
	}
	report, err := abi.ReportToProto(raw)
	if err != nil {
		return fmt.Errorf("parse: %v", err)
	}
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	if *certsPath != "" {
		table, err := os.ReadFile(*certsPath)
		if err != nil {
			return err
		}
		var ct abi.CertTable
		if err := ct.Unmarshal(table); err != nil {
			return fmt.Errorf("cert table: %v", err)
		}
		chain = ct.Proto()
	}
	if *vekPath != "" {
		ders, err := derBlocks(*vekPath)
		if err != nil {
			return err
		}
		if cn(ders[0]) == "SEV-VLEK" {
			chain.VlekCert = ders[0]
		} else {
			chain.VcekCert = ders[0]
		}
	}
	if *caPath != "" {
		ders, err := derBlocks(*caPath)
		if err != nil {
			return err
		}
		for _, d := range ders {
			switch c := cn(d); {
			case strings.HasPrefix(c, "ARK-"):
				chain.ArkCert = d
			case strings.HasPrefix(c, "SEV-"):
				chain.AskCert = d
			}
		}
	}
	opts := &verify.Options{DisableCertFetching: true, Now: time.Now()}
	if *now != "" {
		t, err := time.Parse(time.RFC3339, *now)
		if err != nil {
			return err
		}
		opts.Now = t
	}
	if *product != "" {
		p, err := kds.ParseProductName(*product+"-B0", abi.VcekReportSigner)
		if err != nil {
			return err
		}
		opts.Product = p
	}
	if *rootsPath != "" {
		ders, err := derBlocks(*rootsPath)
		if err != nil {
			return err
		}
		pc := &trust.ProductCerts{}
		line := ""
		for _, d := range ders {
			c, err := x509.ParseCertificate(d)
			if err != nil {
				return err
			}
			switch name := c.Subject.CommonName; {
			case strings.HasPrefix(name, "ARK-"):
				pc.Ark, line = c, strings.TrimPrefix(name, "ARK-")
			case strings.HasPrefix(name, "SEV-VLEK-"):
				pc.Asvk = c
			case strings.HasPrefix(name, "SEV-"):
				pc.Ask = c
			}
		}
		root := trust.AMDRootCertsProduct(line)
		root.ProductCerts = pc
		opts.TrustedRoots = map[string][]*trust.AMDRootCerts{line: {root}}
	}
	return verify.SnpAttestation(&spb.Attestation{Report: report, CertificateChain: chain, Product: opts.Product}, opts)
}

func main() {
	err := run()
	out := map[string]any{"ok": err == nil}
	if err != nil {
		out["error"] = err.Error()
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
