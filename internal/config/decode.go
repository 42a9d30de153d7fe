package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Bounds on a configuration file. A file is written by an operator, but a
// mistake (or a hostile file) must never hang or crash the server: a
// merge key that refers to its own mapping, or aliases nested so that each
// level doubles the document ("billion laughs"), are rejected here with a
// clear error before they cost anything.
const (
	// MaxFileSize bounds the file: the YAML parser keeps about 200 bytes
	// of memory per node and a node can take two bytes of the file, so a
	// 4 MiB file costs at most about 400 MB and a few seconds to parse.
	// Forty thousand domains in flow style fit.
	MaxFileSize = 4 << 20
	// MaxNodes bounds the nodes decoded once aliases and merge keys are
	// expanded (each expansion counts its nodes again).
	MaxNodes = 2_000_000
	// MaxDepth bounds the nesting of the decoded document, aliases and
	// merge keys included.
	MaxDepth = 64
)

// decoder turns the YAML node tree into the configuration types with the
// checks yaml.v3's own decoder does not make: a typed error with its line
// for every unknown key, duplicate key and value of the wrong type (all of
// them, in file order), duplicate keys found in linear time (yaml.v3
// compares every key of a mapping with every other, 1.7 s at 20,000
// domains), and the bounds above.
type decoder struct {
	file  string
	nodes int
	errs  Errors
	// halted is set when a bound is crossed: decoding stops at once.
	halted bool
	// open are the collections on the path being decoded; an alias to one
	// of them is a cycle.
	open map[*yaml.Node]bool
	// lines records the line of each key (but those inside a domain), so
	// that validation errors can point into the file.
	lines map[string]int
	// fields caches fieldsOf.
	fields map[reflect.Type]map[string]int
}

func (d *decoder) add(n *yaml.Node, key string, kind ErrorKind, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Kind: kind, Msg: fmt.Sprintf(format, args...)})
}

// halt records a bound crossed and stops decoding.
func (d *decoder) halt(n *yaml.Node, format string, args ...any) {
	d.add(n, "", ErrLimit, format, args...)
	d.halted = true
}

// enter counts a node and checks the bounds; false means stop.
func (d *decoder) enter(n *yaml.Node, depth int) bool {
	if d.halted {
		return false
	}
	if d.nodes++; d.nodes > MaxNodes {
		d.halt(n, "the document has more than %d nodes once its aliases are expanded (aliases nested to multiply the document?)", MaxNodes)
		return false
	}
	if depth > MaxDepth {
		d.halt(n, "the document nests more than %d levels deep, aliases and merge keys included", MaxDepth)
		return false
	}
	return true
}

// resolve follows an alias, refusing one that points at a collection it
// is part of (which would never end).
func (d *decoder) resolve(n *yaml.Node, depth int) (*yaml.Node, int, bool) {
	for n.Kind == yaml.AliasNode {
		if !d.enter(n, depth) {
			return nil, 0, false
		}
		if n.Alias == nil || d.open[n.Alias] {
			d.halt(n, "the alias *%s refers to a mapping or list that contains it", n.Value)
			return nil, 0, false
		}
		n, depth = n.Alias, depth+1
	}
	return n, depth, true
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func isMerge(k *yaml.Node) bool { return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" }

// where names a key path in a message.
func where(path string) string {
	if path == "" {
		return "the configuration"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// shape names what a node is, for type errors.
func shape(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// value decodes n into v; path names the key for errors; record says
// whether key lines are recorded.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, depth int, record bool) {
	n, depth, ok := d.resolve(n, depth)
	if !ok || !d.enter(n, depth) {
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		d.scalar(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), path, depth, record)
		v.Set(p)
	case reflect.Struct:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.add(n, path, ErrType, "%s: want a mapping of settings, not %s", where(path), shape(n))
			return
		}
		d.mapping(n, v, path, depth, record)
	case reflect.Map:
		if isNull(n) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.MappingNode {
			d.add(n, path, ErrType, "%s: want a mapping, not %s", where(path), shape(n))
			return
		}
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
		d.mapping(n, v, path, depth, record)
	case reflect.Slice:
		if isNull(n) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.add(n, path, ErrType, "%s: want a list, not %s", where(path), shape(n))
			return
		}
		d.open[n] = true
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), path, depth+1, false)
		}
		delete(d.open, n)
		v.Set(s)
	default:
		d.scalar(n, v, path)
	}
}

// scalar decodes a scalar with yaml.v3's rules for its type.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.add(n, path, ErrType, "%s: want a single value, not %s", where(path), shape(n))
		return
	}
	if v.Kind() == reflect.String && n.ShortTag() != "!!binary" {
		// The common case, without a decoder per value.
		if isNull(n) {
			v.SetString("")
		} else {
			v.SetString(n.Value)
		}
		return
	}
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		want := map[reflect.Kind]string{reflect.Bool: "true or false", reflect.Int: "a whole number",
			reflect.Int64: "a whole number", reflect.Float64: "a number"}[v.Kind()]
		if want == "" {
			want = "a value of type " + v.Type().String()
		}
		var te *typeError
		if errors.As(err, &te) {
			want = te.want
		}
		d.add(n, path, ErrType, "%s %q: want %s", path, n.Value, want)
		return
	}
	v.Set(p.Elem())
}

// typeError is what a yaml.Unmarshaler of this package returns: what the
// value should have been.
type typeError struct{ want string }

func (e *typeError) Error() string { return "want " + e.want }

// mapping decodes a mapping into a struct (keys are its yaml tags) or a
// map. Merge keys (<<) are applied first, the mappings they name in
// order of precedence (YAML merge key type); the mapping's own keys then
// override them.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, depth int, record bool) {
	d.open[n] = true
	defer delete(d.open, n)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !isMerge(n.Content[i]) {
			continue
		}
		src, sdepth, ok := d.resolve(n.Content[i+1], depth+1)
		if !ok {
			return
		}
		sources := []*yaml.Node{src}
		if src.Kind == yaml.SequenceNode {
			if !d.enter(src, sdepth) {
				return
			}
			sources = src.Content
		}
		// The first mapping listed wins, so it is applied last.
		for j := len(sources) - 1; j >= 0; j-- {
			m, mdepth, ok := d.resolve(sources[j], sdepth+1)
			if !ok || !d.enter(m, mdepth) {
				return
			}
			if m.Kind != yaml.MappingNode {
				d.add(m, path, ErrType, "%s: a merge key (<<) takes a mapping or a list of mappings, not %s", join(path, "<<"), shape(m))
				continue
			}
			if d.open[m] {
				d.halt(m, "the merge key at line %d merges a mapping into itself", n.Content[i].Line)
				return
			}
			d.mapping(m, v, path, mdepth+1, record)
			if d.halted {
				return
			}
		}
	}
	var fields map[string]int
	if v.Kind() == reflect.Struct {
		fields = d.fieldsOf(v.Type())
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.add(k, path, ErrType, "%s: a key must be a single value, not %s", where(path), shape(k))
			continue
		}
		key := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.add(k, key, ErrDuplicateKey, "%s is given twice (first at line %d)", key, first)
			continue
		}
		seen[k.Value] = k.Line
		if record {
			d.lines[key] = k.Line
		}
		if fields != nil {
			f, ok := fields[k.Value]
			if !ok {
				d.add(k, key, ErrUnknownKey, "unknown key %q", k.Value)
				continue
			}
			d.value(val, v.Field(f), key, depth+1, record)
		} else {
			elem := reflect.New(v.Type().Elem()).Elem()
			// Inside a domain, keys are not recorded: there can be tens
			// of thousands, and errors name the domain's line.
			d.value(val, elem, key, depth+1, false)
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
		if d.halted {
			return
		}
	}
}

// fieldsOf maps a struct's yaml keys to its field indexes.
func (d *decoder) fieldsOf(t reflect.Type) map[string]int {
	if out, ok := d.fields[t]; ok {
		return out
	}
	out := make(map[string]int, t.NumField())
	d.fields[t] = out
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			out[name] = i
		}
	}
	return out
}

// decode parses data and decodes it into c.
func decode(file string, data []byte, c *Config) (lines map[string]int, errs Errors) {
	if len(data) > MaxFileSize {
		return nil, Errors{{File: file, Kind: ErrLimit, Msg: fmt.Sprintf("the file is larger than %d bytes", MaxFileSize)}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		// yaml.v3's syntax errors are text only ("yaml: line 3: did not
		// find expected key"); they are passed on as they are.
		return nil, Errors{{File: file, Kind: ErrSyntax, Msg: strings.TrimPrefix(err.Error(), "yaml: "), Err: err}}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return map[string]int{}, nil // an empty file: the defaults
	}
	d := &decoder{file: file, open: map[*yaml.Node]bool{}, lines: map[string]int{}, fields: map[reflect.Type]map[string]int{}}
	d.value(root.Content[0], reflect.ValueOf(c).Elem(), "", 0, true)
	return d.lines, d.errs
}
