package offboard

import "encoding/json"

// memberNames lists the member names of a JSON object at the top level, in
// order, as a reader decodes them, without decoding the values. It is the
// quick path of checkMembers: on anything but a plainly well-formed object
// it says !ok, and the slow path (encoding/json's tokenizer) decides and
// explains. Values are only skipped here; json.Unmarshal checks them.
func memberNames(data []byte) (keys []string, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil, skipSpace(data, i+1) == len(data)
	}
	for {
		key, end, ok := scanString(data, i)
		if !ok {
			return nil, false
		}
		keys = append(keys, key)
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		if i, ok = skipValue(data, skipSpace(data, i+1)); !ok {
			return nil, false
		}
		i = skipSpace(data, i)
		switch {
		case i < len(data) && data[i] == ',':
			i = skipSpace(data, i+1)
		case i < len(data) && data[i] == '}':
			return keys, skipSpace(data, i+1) == len(data)
		default:
			return nil, false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the string starting at data[i] and returns it decoded,
// with the index after its closing quote.
func scanString(data []byte, i int) (string, int, bool) {
	end, escaped, ok := stringEnd(data, i)
	if !ok {
		return "", 0, false
	}
	if !escaped {
		return string(data[i+1 : end-1]), end, true
	}
	var s string
	if json.Unmarshal(data[i:end], &s) != nil {
		return "", 0, false
	}
	return s, end, true
}

// stringEnd finds the end of the string starting at data[i].
func stringEnd(data []byte, i int) (end int, escaped, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return j + 1, escaped, true
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

// skipValue returns the index after the value starting at data[i].
func skipValue(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		end, _, ok := stringEnd(data, i)
		return end, ok
	case '{', '[':
		return skipNested(data, i)
	}
	j := i
	for j < len(data) && isScalarByte(data[j]) {
		j++
	}
	return j, j > i
}

// skipNested skips an object or array, strings inside included.
func skipNested(data []byte, i int) (int, bool) {
	depth := 0
	for j := i; j < len(data); j++ {
		switch data[j] {
		case '"':
			end, _, ok := stringEnd(data, j)
			if !ok {
				return 0, false
			}
			j = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return j + 1, true
			}
		}
	}
	return 0, false
}

func isScalarByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c >= 'A' && c <= 'Z'
}
