package main

import (
	"flag"
	"fmt"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
)

func runFindings(args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls findings", flag.ContinueOnError)
	markdown := fs.Bool("markdown", false, "print the catalog as Markdown (the source of docs/findings.md)")
	if ok, code := parseFlags(fs, args, env); !ok {
		return code
	}
	if *markdown {
		if err := report.WriteFindingsMarkdown(env.Stdout); err != nil {
			fmt.Fprintln(env.Stderr, "mailtls findings:", err)
			return ExitUsage
		}
		return ExitOK
	}
	for _, d := range finding.Catalog() {
		fmt.Fprintf(env.Stdout, "%-36s %-15s %-16s %s\n", d.ID, severities(d), d.Component, d.Title)
	}
	return ExitOK
}

func severities(d *finding.Def) string {
	s := ""
	for i, v := range d.Severities {
		if i > 0 {
			s += "/"
		}
		s += v.String()
	}
	return s
}
