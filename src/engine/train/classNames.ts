/**
 * Which of a model's labels each class folder of a dataset names. A label and
 * a folder rarely match byte for byte in the field: Teachable Machine labels
 * its classes "Class 1", "Class 2" and people name the folders they collected
 * class_1, class_2 (the field test's handwritten-digits export and its own
 * training_data/ folders); labels typed in the browser keep a trailing space
 * ("Healthy ") that no folder name has. Names are therefore matched exactly
 * first, then by a loose key (Unicode NFC, case, and runs of spaces,
 * underscores and hyphens as one space, trimmed) where that key is
 * unambiguous on both sides; the caller says which matched loosely.
 */

/** The name compared when the exact one does not match: "Class_0 " and "class 0" are one key. */
export function looseKey(name: string): string {
  return name.normalize('NFC').toLowerCase().replace(/[\s_-]+/g, ' ').trim();
}

export interface ClassMatch {
  /** For each class, the index of its label, or -1 when none matches. */
  map: number[];
  /** Classes matched by the loose key, as `folder → "label"` for messages. */
  loose: string[];
}

export function matchClasses(classes: readonly string[], labels: readonly string[]): ClassMatch {
  const map = classes.map((c) => labels.indexOf(c));
  const taken = new Set(map.filter((i) => i >= 0));
  const count = (names: readonly string[]) => {
    const n = new Map<string, number>();
    for (const s of names) n.set(looseKey(s), (n.get(looseKey(s)) ?? 0) + 1);
    return n;
  };
  const classKeys = count(classes);
  const labelKeys = count(labels);
  const loose: string[] = [];
  classes.forEach((c, i) => {
    if (map[i] >= 0) return;
    const key = looseKey(c);
    // Two folders or two labels with one key would make the pairing a guess.
    if (classKeys.get(key) !== 1 || labelKeys.get(key) !== 1) return;
    const j = labels.findIndex((l) => looseKey(l) === key);
    if (taken.has(j)) return;
    map[i] = j;
    taken.add(j);
    loose.push(`${c} → ${JSON.stringify(labels[j])}`);
  });
  return { map, loose };
}

/** "class_0 → "Class 0", class_1 → "Class 1", …" (at most `max` pairs). */
export function looseList(loose: readonly string[], max = 3): string {
  return loose.length <= max ? loose.join(', ') : `${loose.slice(0, max).join(', ')}, … (${loose.length} in all)`;
}
