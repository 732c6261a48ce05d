/**
 * JSON text from outside (request bodies, JSON-lines files), checked before it is parsed.
 * JSON.parse builds whatever depth it is given, and every later step that walks the value
 * (validation messages, flattening, logging) would be a recursion the sender controls.
 */

/**
 * Whether JSON text nests arrays and objects deeper than `max`, stopping as soon as it does
 * (one linear scan, strings skipped). Not a validator: JSON.parse comes next.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < n; i++) {
        const s = text.charCodeAt(i);
        if (s === 92 /* \ */) i++;
        else if (s === 34) break;
      }
    } else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > max) return true;
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
  }
  return false;
}
