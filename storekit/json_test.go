package storekit

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonCases are documents at the edges of the grammar, each checked
// against encoding/json by TestValidJSON and seeding FuzzValidJSON.
var jsonCases = []string{
	``, ` `, `{}`, `[]`, ` {} `, "\t\n\r[]\r\n\t", `{`, `}`, `[`, `]`, `[}`, `{]`, `{}}`, `[]]`, `{}{}`, `[][]`,
	`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1e5`, `1E-5`, `-1.5e+10`, `1.e5`, `+1`, `0x10`, `1 2`, `Infinity`, `NaN`,
	`true`, `false`, `null`, `tru`, `truex`, `nul`, `True`, `[true,false,null]`, `[true false]`,
	`""`, `"`, `"abc`, `"a\"b"`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\a"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u12"`, `"\ud800"`, `"\uDC00\uD800"`,
	"\"tab\there\"", "\"nul\x00\"", "\"del\x7f\"", `"é"`, "\"\xe9\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xef\xbf\xbd\"", "\"\xf4\x90\x80\x80\"", "\"\xf0\x9f\x98\x80\"",
	"\xef\xbb\xbf{}", "{}\xff", "\"ok\"\xff",
	`{"a":1}`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a":1 "b":2}`, `{"a":1,"b":[1,2,{"c":null}]}`, `{"a" : 1 , "b" : 2}`, `{,}`, `{"a":1,,"b":2}`,
	`[1,]`, `[,1]`, `[1,,2]`, `[[[]]]`, `[[[]]`, `[1,[2,[3,{"x":[4]}]]]`,
	`{"id":"0f9e6c1a-2b3c-4d5e-8f90-123456789abc","amount":12.50,"note":"a longer string with \"quotes\" and \\ backslashes ünïcödé","items":[{"sku":"A-1","qty":2},{"sku":"B-2","qty":1}]}`,
}

// TestValidJSON checks validJSON against utf8.Valid && json.Valid on
// jsonCases, each also cut at every length, so that a document ending at
// any point of any token is covered.
func TestValidJSON(t *testing.T) {
	for _, c := range jsonCases {
		for n := 0; n <= len(c); n++ {
			checkValidJSON(t, []byte(c[:n]))
		}
	}
}

// TestValidJSON_Depth checks the nesting limit, which validJSON shares
// with encoding/json: 10,000 levels pass, 10,001 do not, whether the
// innermost container is empty or not.
func TestValidJSON_Depth(t *testing.T) {
	for _, depth := range []int{maxJSONDepth - 1, maxJSONDepth, maxJSONDepth + 1} {
		for _, doc := range []string{
			strings.Repeat("[", depth) + strings.Repeat("]", depth),
			strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth),
			strings.Repeat(`{"k":`, depth-1) + "{}" + strings.Repeat("}", depth-1),
			strings.Repeat(`{"k":`, depth) + "1" + strings.Repeat("}", depth),
		} {
			want := depth <= maxJSONDepth
			if got := json.Valid([]byte(doc)); got != want {
				t.Fatalf("the test's own premise: json.Valid at depth %d (%.8s...) = %v", depth, doc, got)
			}
			if got := validJSON([]byte(doc)); got != want {
				t.Errorf("validJSON at depth %d (%.8s...) = %v, want %v", depth, doc, got, want)
			}
		}
	}
}

// FuzzValidJSON holds validJSON to what it replaces: utf8.Valid(b) &&
// json.Valid(b), on any bytes.
func FuzzValidJSON(f *testing.F) {
	for _, c := range jsonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkValidJSON(t, b)
	})
}

func checkValidJSON(t *testing.T, b []byte) {
	t.Helper()
	want := utf8.Valid(b) && json.Valid(b)
	if got := validJSON(b); got != want {
		t.Fatalf("validJSON(%q) = %v, encoding/json and utf8 say %v", b, got, want)
	}
}

// BenchmarkValidJSON compares validJSON with the checks it replaces on
// payloads of the sizes the bench fixture uses.
func BenchmarkValidJSON(b *testing.B) {
	for _, size := range []int{100, 250, 2048} {
		doc := benchDocument(size)
		if !json.Valid(doc) {
			b.Fatalf("invalid benchmark document %s", doc)
		}
		b.Run(fmt.Sprintf("size=%d/validJSON", size), func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if !validJSON(doc) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(fmt.Sprintf("size=%d/encoding-json", size), func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if !utf8.Valid(doc) || !json.Valid(doc) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// benchDocument returns an object of about size bytes shaped like an
// application event: IDs, amounts, short strings and a list of items.
func benchDocument(size int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"order_id":"0f9e6c1a-2b3c-4d5e-8f90-123456789abc","customer":"Jane Doe","total":1234.50,"currency":"EUR","items":[`)
	for i := 0; sb.Len() < size-40; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"sku":"SKU-%04d","qty":%d,"price":%d.99}`, i, i%5+1, 10+i)
	}
	sb.WriteString(`],"paid":true,"note":null}`)
	return []byte(sb.String())
}
