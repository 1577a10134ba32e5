package config

import (
	"strings"
	"testing"
	"unicode"
)

// TestFoldedKeepsLetterForLetter: two tags alike letter for letter
// (strings.EqualFold of their Words, as the guards compared before full
// case folding) have one Folded form, for every letter with another case:
// a device such a tag protected stays protected. Cherokee capitals and
// small letters folded apart (cases.Fold swaps them), and a tag of them
// with ß matched no device tagged in the other case with SS.
func TestFoldedKeepsLetterForLetter(t *testing.T) {
	t.Parallel()
	bad := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			a, b := "Straße "+string(r)+"x", "STRASSE "+string(f)+"x"
			if !strings.EqualFold(Words("Straße "+string(r)+"x"), Words("straße "+string(f)+"x")) {
				continue // one of them stands for other letters in NFKC form
			}
			if Folded(a) != Folded(b) {
				if bad++; bad <= 5 {
					t.Errorf("%U and %U: %q and %q fold to %q and %q", r, f, a, b, Folded(a), Folded(b))
				}
			}
		}
	}
	if bad > 5 {
		t.Errorf("and %d more", bad-5)
	}
	for _, c := range [][2]string{{"ᏣᎳᎩ Straße", "ꮳꮃꭹ STRASSE"}, {"Außendienst", "AUSSENDIENST"}, {"ΟΔΟΣ", "οδος"}, {"CRİTİCAL", "critical"}} {
		if Folded(c[0]) != Folded(c[1]) {
			t.Errorf("%q and %q fold to %q and %q", c[0], c[1], Folded(c[0]), Folded(c[1]))
		}
	}
}
