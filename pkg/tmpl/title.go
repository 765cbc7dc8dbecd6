package tmpl

import (
	"strings"
	"unicode"
)

// title is consul-template's toTitle, golang.org/x/text/cases.Title(
// language.Und, cases.NoLower), without linking x/text's case tables into
// the agent (+330 KiB measured): the first cased letter of each word is
// title-cased (full mapping: "ß" → "Ss"), the rest is left as is. A word
// ends at a character that is neither a letter, a digit, a mark, a format
// character, a connector ('_') nor a mid-word character ("'", '.', ':' …);
// two mid-word characters in a row end it too. A differential test compares
// it with x/text.
func title(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	mid, prevMid := false, false
	first := true
	for _, r := range s {
		isMid := midWord(r)
		if !first && prevMid && isMid {
			mid = false
		}
		first = false
		switch {
		case cased(r):
			if !mid {
				b.WriteString(titleRune(r))
				mid = true
			} else {
				b.WriteRune(r)
			}
		default:
			b.WriteRune(r)
			if wordBreak(r) {
				mid = false
			}
		}
		prevMid = isMid
	}
	return b.String()
}

func cased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// midWord: Word_Break MidLetter, MidNumLet and Single_Quote.
func midWord(r rune) bool {
	switch r {
	case '\'', '.', ':', '\u00B7', '\u0387', '\u055F', '\u05F4', '\u2018', '\u2019', '\u2024',
		'\u2027', '\uFE13', '\uFE52', '\uFE55', '\uFF07', '\uFF0E', '\uFF1A':
		return true
	}
	return false
}

func wordBreak(r rune) bool {
	switch {
	case midWord(r), r == '\u200D', r == '\u202F', r >= '\u055A' && r <= '\u055C', r == '\u058A':
		return false
	case r == '\u200B':
		return true
	case unicode.In(r, unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar, unicode.Tai_Tham, unicode.Tai_Viet, unicode.New_Tai_Lue):
		return true // Word_Break Other (South-East Asian scripts break per dictionary)
	case unicode.Is(unicode.Lm, r):
		return false
	}
	return !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.In(r, unicode.Nl, unicode.Mn, unicode.Me, unicode.Mc, unicode.Cf, unicode.Pc))
}

// specialTitle holds the title mappings of Unicode's SpecialCasing that are
// longer than one rune.
var specialTitle = map[rune]string{
	'ß': "Ss", 'ŉ': "ʼN", 'ǰ': "J̌", '\u0390': "\u0399\u0308\u0301", '\u03B0': "\u03A5\u0308\u0301", '\u1FD3': "\u0399\u0308\u0301", '\u1FE3': "\u03A5\u0308\u0301", 'և': "Եւ",
	'ẖ': "H̱", 'ẗ': "T̈", 'ẘ': "W̊", 'ẙ': "Y̊", 'ẚ': "Aʾ",
	'ὐ': "Υ̓", 'ὒ': "Υ̓̀", 'ὔ': "Υ̓́", 'ὖ': "Υ̓͂",
	'ᾲ': "Ὰͅ", 'ᾴ': "Άͅ", 'ᾶ': "Α͂", 'ᾷ': "ᾼ͂", 'ῂ': "Ὴͅ", 'ῄ': "Ήͅ", 'ῆ': "Η͂", 'ῇ': "ῌ͂",
	'ῒ': "Ϊ̀", 'ῖ': "Ι͂", '\u1FD7': "\u0399\u0308\u0342", 'ῢ': "Ϋ̀", 'ῤ': "Ρ̓", 'ῦ': "Υ͂", 'ῧ': "Ϋ͂",
	'ῲ': "Ὺͅ", 'ῴ': "Ώͅ", 'ῶ': "Ω͂", 'ῷ': "ῼ͂",
	'ﬀ': "Ff", 'ﬁ': "Fi", 'ﬂ': "Fl", 'ﬃ': "Ffi", 'ﬄ': "Ffl", 'ﬅ': "St", 'ﬆ': "St",
	'ﬓ': "Մն", 'ﬔ': "Մե", 'ﬕ': "Մի", 'ﬖ': "Վն", 'ﬗ': "Մխ",
}

func titleRune(r rune) string {
	if s, ok := specialTitle[r]; ok {
		return s
	}
	return string(unicode.ToTitle(r))
}
