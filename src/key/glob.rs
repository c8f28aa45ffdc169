//! Matching input globs without compiling a regex for the common shapes.
//!
//! globset compiles every glob into a regex DFA, which costs a compile hit with `-i '*.h'` about
//! 13% of its instructions on every run. Globs made only of literals, `*`, `?` and `**` (nearly
//! all input globs) are matched here instead, by a tiny NFA simulated over the path's bytes. It
//! is built from the same tokens globset's parser produces (its `parse_star` rules are ported
//! one for one) and their regex translations under `literal_separator(true)`:
//!
//! | token | regex |
//! |---|---|
//! | `?` | `[^/]` |
//! | `*` | `[^/]*` |
//! | `**/` at the start | `(?:/?\|.*/)` (and `**` alone: `.*`) |
//! | `/**` at the end | `/.*` |
//! | `/**/` | `(?:/\|/.*/)` |
//!
//! Anything else (classes, alternation, escapes) goes to globset unchanged. The unit tests
//! compare both exhaustively on short patterns and on random ones.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A compiled input glob, matched against paths relative to the working directory.
pub enum Matcher {
    Simple(Nfa),
    Full(globset::GlobMatcher),
}

impl Matcher {
    /// Compile `pattern` (already normalised) with the options input globs use.
    pub fn new(pattern: &str) -> Result<Matcher, globset::Error> {
        if let Some(nfa) = parse(pattern).and_then(|t| Nfa::compile(&t)) {
            return Ok(Matcher::Simple(nfa));
        }
        Ok(Matcher::Full(
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()?
                .compile_matcher(),
        ))
    }

    pub fn is_match(&self, path: &Path) -> bool {
        match self {
            Matcher::Simple(n) => n.is_match(path.as_os_str().as_bytes()),
            Matcher::Full(g) => g.is_match(path),
        }
    }

    /// How many `/` a matching path has, when that is fixed (no `**`): a walk need not go
    /// deeper.
    pub fn slashes(&self) -> Option<usize> {
        match self {
            Matcher::Simple(n) => n.slashes,
            Matcher::Full(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    Any,
    ZeroOrMore,
    RecursivePrefix,
    RecursiveSuffix,
    RecursiveZeroOrMore,
}

/// globset's tokens for `pattern`, or `None` if it uses anything beyond literals, `*`, `?` and
/// `**`. Mirrors `globset::glob::Parser` (0.4) outside alternations.
fn parse(pattern: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '?' => tokens.push(Token::Any),
            '*' => {
                // The character before this `*` (globset's `prev`).
                let prev = (i >= 2).then(|| chars[i - 2]);
                if chars.get(i) != Some(&'*') {
                    tokens.push(Token::ZeroOrMore);
                    continue;
                }
                i += 1;
                if tokens.is_empty() {
                    match chars.get(i) {
                        Some(&c) if c != '/' => {
                            tokens.extend([Token::ZeroOrMore, Token::ZeroOrMore]);
                        }
                        next => {
                            tokens.push(Token::RecursivePrefix);
                            if next.is_some() {
                                i += 1;
                            }
                        }
                    }
                    continue;
                }
                if prev != Some('/') {
                    tokens.extend([Token::ZeroOrMore, Token::ZeroOrMore]);
                    continue;
                }
                let is_suffix = match chars.get(i) {
                    None => true,
                    Some('/') => {
                        i += 1;
                        false
                    }
                    Some(_) => {
                        tokens.extend([Token::ZeroOrMore, Token::ZeroOrMore]);
                        continue;
                    }
                };
                let replaced = match tokens.pop().expect("tokens is not empty") {
                    Token::RecursivePrefix => Token::RecursivePrefix,
                    Token::RecursiveSuffix => Token::RecursiveSuffix,
                    _ if is_suffix => Token::RecursiveSuffix,
                    _ => Token::RecursiveZeroOrMore,
                };
                tokens.push(replaced);
            }
            '[' | ']' | '{' | '}' | '\\' => return None,
            c => tokens.push(Token::Literal(c)),
        }
    }
    Some(tokens)
}

#[derive(Clone, Copy, Debug)]
enum Node {
    /// Consume this byte, go to the state.
    Byte(u8, usize),
    /// Consume any byte but `/`.
    NotSlash(usize),
    /// Consume any byte.
    AnyByte(usize),
    /// Go to both states without consuming.
    Split(usize, usize),
    Match,
}

/// A Thompson NFA of at most 128 states, simulated with a bit set: linear in the path's length,
/// whatever the pattern (no backtracking).
pub struct Nfa {
    nodes: Vec<Node>,
    /// See [`Matcher::slashes`].
    slashes: Option<usize>,
}

const MAX_STATES: usize = 128;

impl Nfa {
    fn compile(tokens: &[Token]) -> Option<Nfa> {
        let mut n: Vec<Node> = Vec::new();
        // `.*` at the current end.
        fn any_star(n: &mut Vec<Node>) {
            let i = n.len();
            n.push(Node::Split(i + 1, i + 2));
            n.push(Node::AnyByte(i));
        }
        // `(?:|.*/)`: nothing, or anything ending with `/`.
        fn opt_dirs(n: &mut Vec<Node>) {
            let i = n.len();
            let end = i + 4;
            n.push(Node::Split(end, i + 1));
            n.push(Node::Split(i + 2, i + 3));
            n.push(Node::AnyByte(i + 1));
            n.push(Node::Byte(b'/', end));
        }
        if tokens == [Token::RecursivePrefix] {
            // globset's special case: `**` alone matches everything.
            any_star(&mut n);
        } else {
            for t in tokens {
                let i = n.len();
                match *t {
                    Token::Literal(c) => {
                        let mut buf = [0u8; 4];
                        for (k, &b) in c.encode_utf8(&mut buf).as_bytes().iter().enumerate() {
                            n.push(Node::Byte(b, i + k + 1));
                        }
                    }
                    Token::Any => n.push(Node::NotSlash(i + 1)),
                    Token::ZeroOrMore => {
                        n.push(Node::Split(i + 1, i + 2));
                        n.push(Node::NotSlash(i));
                    }
                    // `(?:/?|.*/)` is the same language as `(?:|.*/)`.
                    Token::RecursivePrefix => opt_dirs(&mut n),
                    Token::RecursiveSuffix => {
                        n.push(Node::Byte(b'/', i + 1));
                        any_star(&mut n);
                    }
                    // `(?:/|/.*/)` is `/(?:|.*/)`.
                    Token::RecursiveZeroOrMore => {
                        n.push(Node::Byte(b'/', i + 1));
                        opt_dirs(&mut n);
                    }
                }
            }
        }
        n.push(Node::Match);
        if n.len() > MAX_STATES {
            return None;
        }
        let recursive = tokens.iter().any(|t| {
            matches!(
                t,
                Token::RecursivePrefix | Token::RecursiveSuffix | Token::RecursiveZeroOrMore
            )
        });
        let slashes =
            (!recursive).then(|| tokens.iter().filter(|t| **t == Token::Literal('/')).count());
        Some(Nfa { nodes: n, slashes })
    }

    fn add(&self, set: &mut u128, i: usize) {
        if *set & (1 << i) != 0 {
            return;
        }
        *set |= 1 << i;
        if let Node::Split(a, b) = self.nodes[i] {
            self.add(set, a);
            self.add(set, b);
        }
    }

    fn is_match(&self, path: &[u8]) -> bool {
        let mut cur = 0u128;
        self.add(&mut cur, 0);
        for &b in path {
            let mut next = 0u128;
            let mut states = cur;
            while states != 0 {
                let i = states.trailing_zeros() as usize;
                states &= states - 1;
                match self.nodes[i] {
                    Node::Byte(c, to) if c == b => self.add(&mut next, to),
                    Node::NotSlash(to) if b != b'/' => self.add(&mut next, to),
                    Node::AnyByte(to) => self.add(&mut next, to),
                    _ => {}
                }
            }
            if next == 0 {
                return false;
            }
            cur = next;
        }
        cur & (1 << (self.nodes.len() - 1)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ffi::OsStr;

    fn globset(pattern: &str) -> globset::GlobMatcher {
        globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .unwrap()
            .compile_matcher()
    }

    fn strings(alphabet: &[&str], max_len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max_len {
            let mut next = Vec::new();
            for s in &last {
                for a in alphabet {
                    next.push(format!("{s}{a}"));
                }
            }
            all.extend(next.iter().cloned());
            last = next;
        }
        all
    }

    fn check(pattern: &str, path: &[u8], g: &globset::GlobMatcher, m: &Matcher) {
        let p = Path::new(OsStr::from_bytes(path));
        assert_eq!(
            m.is_match(p),
            g.is_match(p),
            "pattern {pattern:?}, path {:?}",
            String::from_utf8_lossy(path)
        );
        if m.is_match(p)
            && let Some(n) = m.slashes()
        {
            assert_eq!(path.iter().filter(|&&b| b == b'/').count(), n);
        }
    }

    /// Every pattern of up to 5 tokens over `a . / * ?` against every path of up to 5 bytes over
    /// `a . /`: the hand matcher and globset agree on all of them.
    #[test]
    fn agrees_with_globset_exhaustively() {
        let paths = strings(&["a", ".", "/"], 5);
        for pattern in strings(&["a", ".", "/", "*", "?"], 5) {
            let m = Matcher::new(&pattern).unwrap();
            assert!(matches!(m, Matcher::Simple(_)), "{pattern:?}");
            let g = globset(&pattern);
            for path in &paths {
                check(&pattern, path.as_bytes(), &g, &m);
            }
        }
    }

    #[test]
    fn common_shapes() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.h", "a.h", true),
            ("*.h", ".h", true),
            ("*.h", "sub/a.h", false),
            ("**/*.rs", "a.rs", true),
            ("**/*.rs", "a/b/c.rs", true),
            ("src/**/*.rs", "src/x.rs", true),
            ("src/**/*.rs", "src/a/b/x.rs", true),
            ("src/**/*.rs", "srcx.rs", false),
            ("src/**", "src/a/b", true),
            ("src/**", "src", false),
            ("**", "a/b/c", true),
            ("?.c", "é.c", false),
            ("??.c", "é.c", true),
            ("a**b", "axxb", true),
            ("a**b", "ax/xb", false),
        ];
        for (pattern, path, want) in cases {
            let m = Matcher::new(pattern).unwrap();
            assert!(matches!(m, Matcher::Simple(_)));
            assert_eq!(m.is_match(Path::new(path)), *want, "{pattern} {path}");
            assert_eq!(globset(pattern).is_match(path), *want, "{pattern} {path}");
        }
        // Classes, alternation and escapes are left to globset.
        for pattern in ["[ab].c", "{a,b}.c", "a\\*"] {
            assert!(matches!(Matcher::new(pattern).unwrap(), Matcher::Full(_)));
        }
        assert!(Matcher::new("a}").is_err());
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", ".", "/", "*", "**", "?", "é", ",", "x/"]),
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    fn path_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop::sample::select(vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b".".to_vec(),
                b"/".to_vec(),
                "é".as_bytes().to_vec(),
                vec![0xff],
                b",".to_vec(),
                b"x".to_vec(),
            ]),
            0..16,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Random longer patterns and paths (non-UTF-8 bytes included).
        #[test]
        fn agrees_with_globset_on_random_input(
            pattern in pattern_strategy(),
            paths in prop::collection::vec(path_strategy(), 1..20),
        ) {
            let m = Matcher::new(&pattern).unwrap();
            prop_assert!(matches!(m, Matcher::Simple(_)));
            let g = globset(&pattern);
            for path in &paths {
                check(&pattern, path, &g, &m);
            }
        }
    }
}
