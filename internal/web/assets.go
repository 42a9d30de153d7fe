package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// asset is one embedded static file under its hashed name.
type asset struct {
	name  string // e.g. "app.js"
	url   string // e.g. "/static/app.3f2a9c1b0e.js"
	ctype string
	body  []byte
}

// assets are the static files by hashed URL and by name; loaded once.
var assets = func() map[string]*asset {
	out := map[string]*asset{}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		body, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(e.Name())
		a := &asset{name: e.Name(), body: body,
			url: "/static/" + strings.TrimSuffix(e.Name(), ext) + "." + hex.EncodeToString(sum[:5]) + ext}
		switch ext {
		case ".js":
			a.ctype = "text/javascript; charset=utf-8"
		case ".css":
			a.ctype = "text/css; charset=utf-8"
		case ".svg":
			a.ctype = "image/svg+xml"
		case ".png":
			a.ctype = "image/png"
		default:
			a.ctype = "application/octet-stream"
		}
		out[a.url] = a
		out[a.name] = a
	}
	return out
}()

// assetURL is the template function "asset": the hashed URL of a file.
func assetURL(name string) (string, error) {
	a := assets[name]
	if a == nil {
		return "", fmt.Errorf("web: no static file %q", name)
	}
	return a.url, nil
}

// serveStatic serves a hashed static file with a long cache lifetime: its
// URL changes whenever its content does.
func serveStatic(w http.ResponseWriter, r *http.Request) {
	a := assets[r.URL.Path]
	if a == nil || !strings.HasPrefix(r.URL.Path, "/static/") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// templates are parsed once at start-up; each page is the layout plus its
// own file.
var templates = func() map[string]*template.Template {
	funcs := template.FuncMap{
		"asset":      assetURL,
		"utc":        func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"duration":   humanSeconds,
		"inc":        func(i int) int { return i + 1 },
		"day":        func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
		"lastDay":    func(t time.Time) string { return t.UTC().AddDate(0, 0, -1).Format(time.DateOnly) },
		"deref":      func(b *bool) bool { return b != nil && *b },
		"sentence":   sentence,
		"observed":   func(class string) bool { return smtpprobe.Class(class).Observed() },
		"stageTitle": func(s scanjob.Stage) string { return s.Title() },
		"statusIcon": func(s scanjob.Status) string { return statusWords[s][0] },
		"statusWord": func(s scanjob.Status) string { return statusWords[s][1] },
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html"))
	out := map[string]*template.Template{}
	for _, page := range []string{"home", "progress", "result", "error", "unsubscribe", "dashboard", "domain", "savedscan", "diff",
		"signup", "verify", "login", "reset", "resetconfirm", "message", "settings", "shares", "shared", "channels", "channel", "confirmaddress", "reports", "verifydomain"} {
		t := template.Must(base.Clone())
		out[page] = template.Must(t.ParseFS(templateFS, "templates/"+page+".html"))
	}
	return out
}()

// sentence starts s with a capital letter.
func sentence(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// humanSeconds renders a max_age.
func humanSeconds(s int64) string {
	switch {
	case s%86400 == 0 && s >= 86400:
		return plural(s/86400, "day")
	case s%3600 == 0 && s >= 3600:
		return plural(s/3600, "hour")
	case s%60 == 0 && s >= 60:
		return plural(s/60, "minute")
	}
	return plural(s, "second")
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
