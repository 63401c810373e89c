//! Shell-style patterns for `images --filter reference=`, as Go's
//! `path.Match` reads them: `*` and `?` never match `/`, `[...]` classes
//! with ranges and `^` negation, backslash escapes.

/// Go's `path.Match`, without its error: a malformed pattern matches
/// nothing. Memoised, so patterns with many `*` stay linear-ish.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let memo = vec![None; (p.len() + 1) * (t.len() + 1)];
    Glob { p: &p, t: &t, memo }.at(0, 0)
}

struct Glob<'a> {
    p: &'a [char],
    t: &'a [char],
    memo: Vec<Option<bool>>,
}

impl Glob<'_> {
    fn at(&mut self, pi: usize, ti: usize) -> bool {
        let key = pi * (self.t.len() + 1) + ti;
        if let Some(Some(known)) = self.memo.get(key) {
            return *known;
        }
        let r = self.compute(pi, ti);
        if let Some(slot) = self.memo.get_mut(key) {
            *slot = Some(r);
        }
        r
    }

    fn compute(&mut self, pi: usize, ti: usize) -> bool {
        let Some(&pc) = self.p.get(pi) else {
            return ti == self.t.len();
        };
        let tc = self.t.get(ti).copied();
        match pc {
            '*' => self.at(pi + 1, ti) || (tc.is_some_and(|c| c != '/') && self.at(pi, ti + 1)),
            '?' => tc.is_some_and(|c| c != '/') && self.at(pi + 1, ti + 1),
            '[' => match glob_class(self.p, pi + 1, tc) {
                Some((true, next)) => self.at(next, ti + 1),
                _ => false,
            },
            '\\' => match self.p.get(pi + 1) {
                Some(&e) => tc == Some(e) && self.at(pi + 2, ti + 1),
                None => false,
            },
            c => tc == Some(c) && self.at(pi + 1, ti + 1),
        }
    }
}

/// A `[...]` class starting after the `[` at `i`: whether `c` is in it
/// (`false` when there is no `c`), and the index after its `]`; `None` when
/// the class is malformed.
fn glob_class(p: &[char], mut i: usize, c: Option<char>) -> Option<(bool, usize)> {
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            break;
        }
        let (lo, next) = glob_class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            (hi, i) = glob_class_char(p, i + 1)?;
        }
        if c.is_some_and(|c| lo <= c && c <= hi) {
            matched = true;
        }
        ranges += 1;
    }
    Some((c.is_some() && matched != negated, i + 1))
}

fn glob_class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match p.get(i)? {
        '-' | ']' => None,
        '\\' => p.get(i + 1).map(|&c| (c, i + 2)),
        &c => Some((c, i + 1)),
    }
}
