// The one redaction rule of the project: the registry checker's messages, the PR comment and the
// e2e tier's leak checks all take out (or look for) the same forms of a secret.

const REDACTED = "[secret]";

/**
 * The forms of each value to take out: the value, its URL-encoding, and its base64 when it is long enough that the
 * base64 cannot match by chance, at each of the three alignments it can have inside a longer
 * encoded text (a Kubernetes Secret's `zot-ci.env` is `ZOT_CI_API_KEY='<key>'` in base64). Values
 * shorter than 4 characters are ignored: replacing them would shred the output without protecting
 * anything a 3-character secret could be.
 */
export function redactionForms(values: string[]): string[] {
  const forms = new Set<string>();
  for (const raw of values) {
    const v = raw.replace(/\r$/, "");
    if (v.length < 4) continue;
    forms.add(v);
    forms.add(encodeURIComponent(v));
    if (v.length >= 8) {
      const bytes = Buffer.from(v, "utf8");
      for (let offset = 0; offset < 3; offset++) {
        const b64 = Buffer.concat([Buffer.alloc(offset), bytes]).toString("base64");
        // Drop the characters that also encode the bytes before the value, and the last group,
        // which depends on what follows it.
        const lead = offset === 0 ? 0 : offset + 1;
        const whole = Math.floor((offset + bytes.length) / 3) * 4;
        const core = b64.slice(lead, whole);
        if (core.length >= 8) forms.add(core);
        if (offset === 0) forms.add(b64).add(b64.replace(/=+$/, ""));
      }
    }
  }
  // Longest first, so a value containing another is replaced whole.
  return [...forms].sort((a, b) => b.length - a.length);
}

export function redact(text: string, values: string[]): string {
  let out = text;
  for (const form of redactionForms(values)) out = out.split(form).join(REDACTED);
  return out;
}
