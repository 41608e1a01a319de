package config

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Limits on what a config may hold. A config under review is untrusted
// input: these keep any file from overflowing the stack (the HCL parser
// and evaluator recurse once per level of nesting, and a Go stack
// overflow is fatal) or exhausting memory. Files read by file() are
// limited by repofs.MaxFileSize.
const (
	// MaxConfigFileSize is the largest *.hcl file, in bytes (1 MiB). The
	// parser holds every token of a file at once, ~100 bytes each.
	MaxConfigFileSize = 1 << 20
	// MaxConfigSize bounds the bytes of all *.hcl files of a config
	// together with every value its functions return (file() included),
	// each call counted (32 MiB): see budget.go.
	MaxConfigSize = 32 << 20
	// MaxNesting is how deeply blocks, braces, brackets, parentheses,
	// strings and template interpolations may nest in a file.
	MaxNesting = 128
	// MaxExpressionDepth bounds the depth an expression's syntax tree can
	// reach: every level of nesting counts one, and so does every
	// operator, index or attribute access of an unfinished expression at
	// each level (a chain of 2000 "+" is 2000 deep to the evaluator).
	MaxExpressionDepth = 1024
)

// frame is one open bracket (or the file's body) during checkNesting.
type frame struct {
	// body: newlines end the expression being read (a block body, an
	// object constructor, the file); elsewhere they are insignificant.
	body bool
	// template: the inside of a string or heredoc, whose parts are flat.
	template bool
	ops      int // operators and accesses since the expression began
}

// CheckNesting returns a diagnostic when src nests deeper than MaxNesting
// or MaxExpressionDepth, which makes it unsafe to parse: the HCL parser and
// evaluator recurse once per level, and a stack overflow is fatal. Load and
// Format check every file; call it before parsing HCL any other way.
func CheckNesting(src []byte, filename string) *hcl.Diagnostic { return checkNesting(src, filename) }

// checkNesting scans src with HCL's lexer, which does not recurse, and
// returns a diagnostic at the first token past MaxNesting or
// MaxExpressionDepth, so that a file is parsed only when the parser's
// recursion is bounded. The count errs on the high side: it may refuse a
// file the parser would have handled, never the reverse.
func checkNesting(src []byte, filename string) *hcl.Diagnostic {
	if d := checkEncoding(src, filename); d != nil {
		return d
	}
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	stack := []frame{{body: true}}
	depth := 1 // sum over the stack of 1 + ops
	tooDeep := func(tok hclsyntax.Token, nesting bool) *hcl.Diagnostic {
		d := &hcl.Diagnostic{Severity: hcl.DiagError, Subject: tok.Range.Ptr()}
		if nesting {
			d.Summary = "Nesting too deep"
			d.Detail = fmt.Sprintf("Blocks, braces, brackets, parentheses, strings and template interpolations nest more than %d levels deep here, the limit for a config file. Flatten the structure.", MaxNesting)
		} else {
			d.Summary = "Expression too complex"
			d.Detail = fmt.Sprintf("This expression reaches a depth of more than %d (each level of nesting and each operator, index or attribute access counts one), the limit for a config file. Split it or simplify it.", MaxExpressionDepth)
		}
		return d
	}
	op := func(tok hclsyntax.Token, n int) *hcl.Diagnostic {
		top := &stack[len(stack)-1]
		if top.ops+n < 0 {
			n = -top.ops
		}
		top.ops += n
		depth += n
		if depth > MaxExpressionDepth {
			return tooDeep(tok, false)
		}
		return nil
	}
	reset := func() {
		top := &stack[len(stack)-1]
		depth -= top.ops
		top.ops = 0
	}
	for i, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			if !stack[len(stack)-1].template {
				// An index or call applies to what precedes it.
				if d := op(tok, 1); d != nil {
					return d
				}
			}
			f := frame{template: tok.Type == hclsyntax.TokenOQuote || tok.Type == hclsyntax.TokenOHeredoc}
			if tok.Type == hclsyntax.TokenOBrace {
				f.body = !startsWith(tokens[i+1:], "for")
			}
			if tok.Type == hclsyntax.TokenTemplateControl {
				// %{ if } and %{ for } nest the template they are in.
				switch {
				case startsWith(tokens[i+1:], "if"), startsWith(tokens[i+1:], "for"):
					if d := op(tok, 1); d != nil {
						return d
					}
				case startsWith(tokens[i+1:], "endif"), startsWith(tokens[i+1:], "endfor"):
					op(tok, -1)
				}
			}
			stack = append(stack, f)
			depth++
			if len(stack) > MaxNesting+1 {
				return tooDeep(tok, true)
			}
			if depth > MaxExpressionDepth {
				return tooDeep(tok, false)
			}
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			if len(stack) > 1 {
				depth -= 1 + stack[len(stack)-1].ops
				stack = stack[:len(stack)-1]
			}
		case hclsyntax.TokenComma:
			reset()
		case hclsyntax.TokenNewline, hclsyntax.TokenComment:
			// A line comment ends with the newline that ends its line.
			if stack[len(stack)-1].body && (tok.Type == hclsyntax.TokenNewline || bytes.HasSuffix(tok.Bytes, []byte("\n"))) {
				reset()
			}
		case hclsyntax.TokenStar, hclsyntax.TokenSlash, hclsyntax.TokenPlus, hclsyntax.TokenMinus,
			hclsyntax.TokenPercent, hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual,
			hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq, hclsyntax.TokenGreaterThan,
			hclsyntax.TokenGreaterThanEq, hclsyntax.TokenAnd, hclsyntax.TokenOr, hclsyntax.TokenBang,
			hclsyntax.TokenDot, hclsyntax.TokenEllipsis, hclsyntax.TokenFatArrow,
			hclsyntax.TokenQuestion, hclsyntax.TokenColon:
			if d := op(tok, 1); d != nil {
				return d
			}
		}
	}
	return nil
}

// startsWith says whether the first token that is not a newline or a
// comment is the identifier word.
func startsWith(tokens hclsyntax.Tokens, word string) bool {
	for _, t := range tokens {
		switch t.Type {
		case hclsyntax.TokenNewline, hclsyntax.TokenComment:
			continue
		case hclsyntax.TokenIdent:
			return string(t.Bytes) == word
		}
		return false
	}
	return false
}

// checkEncoding returns a diagnostic at the first byte of src that is not
// UTF-8: HCL reads text, and a stray byte would otherwise reach values
// (paths, queries) unnoticed.
func checkEncoding(src []byte, filename string) *hcl.Diagnostic {
	if utf8.Valid(src) {
		return nil
	}
	pos := hcl.InitialPos
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n <= 1 {
			end := pos
			end.Byte, end.Column = pos.Byte+1, pos.Column+1
			return &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid character encoding",
				Detail:   fmt.Sprintf("Byte 0x%02x here is not UTF-8, and config files must be UTF-8 text. Save the file as UTF-8.", src[i]),
				Subject:  &hcl.Range{Filename: filename, Start: pos, End: end},
			}
		}
		if r == '\n' {
			pos.Line++
			pos.Column = 1
		} else {
			pos.Column++
		}
		pos.Byte += n
		i += n
	}
	return nil
}
