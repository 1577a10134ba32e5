package mde

import (
	"os"
	"testing"
)

// A secret file saved with a UTF-8 byte order mark (Notepad, PowerShell
// 5's Set-Content -Encoding UTF8) holds the secret after the mark: the
// mark is not sent as part of it.
func TestClientSecretFileWithAByteOrderMark(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"BOM":          "\ufeffs3cret",
		"BOM and CRLF": "\ufeffs3cret\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupLogin(t, "s3cret", "x")
			if err := os.WriteFile(f.secretFile, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			cred := f.newCredential(t)
			if tok, err := f.getToken(cred); err != nil || tok == "" {
				t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
			}
		})
	}
}
