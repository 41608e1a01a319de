// Package regex stands in for github.com/dolthub/go-icu-regex, the ICU
// regular-expression engine go-mysql-server uses for REGEXP, REGEXP_LIKE,
// REGEXP_INSTR, REGEXP_SUBSTR and REGEXP_REPLACE. backflow replaces that
// module with this one (a replace directive in its go.mod) because the
// original compiles a WebAssembly ICU module when its package initialises,
// which cost every backflow command, --help included, about half a second.
// This package does nothing when it initialises and keeps go-mysql-server's
// API: the Regex interface, CreateRegex, the RegexFlags values, the error
// kinds and SetRegexLeakHandler.
//
// Patterns are Go regexp (RE2) syntax, run by the standard library in time
// linear in the input. Most MySQL patterns read the same; features only ICU
// has are refused with ErrInvalidRegex rather than matched differently:
// backreferences (\1), lookahead and lookbehind ((?=, (?!, (?<=, (?<!),
// atomic groups and possessive quantifiers, \Z, nested character sets.
// ICU's \uhhhh, \Uhhhhhhhh and \e escapes are translated.
//
// Flags: RegexFlags_Case_Insensitive is (?i), RegexFlags_Multiline is (?m),
// RegexFlags_Dot_All is (?s), RegexFlags_Literal matches the pattern as
// plain text (still case-insensitive with that flag), RegexFlags_Comments
// ignores white space and #-comments outside character classes. Only \n
// ends a line, as with RegexFlags_Unix_Lines, which therefore changes
// nothing; RegexFlags_Unicode_Word and RegexFlags_Error_On_Unknown_Escapes
// change nothing either (an unknown escape is always an error).
//
// Positions and occurrences count characters (code points) from 1, as
// MySQL's functions do. A search from a later position sees the text
// before it, so ^, \A and \b there are judged in context. In a
// replacement, $n and ${name} insert a group and \c inserts c; a $ not
// followed by a digit or { is itself.
package regex
