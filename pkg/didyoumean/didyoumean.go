// Package didyoumean measures how far a misspelt name is from the names it
// could have meant: the edit distance behind the annotation table's, the
// vault-k8s table's and the template functions' "did you mean" hints.
package didyoumean

// Distance is the Levenshtein distance between a and b, in runes. Callers
// bound the lengths they compare (an annotation name has at most 63
// characters): the cost is the product of the two.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
