//! `cargo xtask bench hot-text`: regenerates `crates/secrets/hot-text.ld`, the linker script that
//! gathers the code a cold start of the secrets function runs at the start of the executable.
//!
//! Why: on a page fault in a file-backed mapping the kernel also maps the pages around it that
//! are in the page cache (fault-around, 64 KiB by default), so hot code scattered over the
//! binary's text makes most of the text resident; gathered, it takes a fraction of it.
//!
//! How: the function (release profile, symbols kept) answers the cold-start bench's deliveries
//! under `valgrind --tool=callgrind` (valgrind must be installed); every function of the binary
//! that ran becomes one input-section pattern of the script (the functions are compiled into
//! sections of their own, `.text.<symbol>` or `.text.unlikely.<symbol>`), in the order
//! callgrind lists them. Assembly (aws-lc's) has one `.text` section per object file: the link
//! map of the profiled build names the file, and the pattern names the file's section.
//!
//! Symbols are v0-mangled (`.cargo/config.toml`; a `RUSTFLAGS` in the environment replaces that
//! setting, and the script then gathers little), which spells generic arguments out instead of
//! hashing them. What still changes with the profile, the target and the dependencies' versions
//! becomes `*`: a crate's hash (`Cs<hash>_`), the back-references whose offsets follow from it
//! (`B<n>_`), the crate that instantiated a generic function (the name's last part: which
//! crate's copy a build keeps varies), and the numbers LTO appends to local names that clash
//! (`.<n>`). So the script profiled on x86_64 applies to other builds, the arm64 one included;
//! a pattern that matches nothing is ignored, and a function no pattern names is placed after
//! the gathered ones: a stale script costs memory, never a build.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::bench;
use crate::test::{TestError, cargo_status, io_error, workspace_root};

/// The function profiled, and the script its release builds link with.
const PACKAGE: &str = "secrets";
const SCRIPT: &str = "crates/secrets/hot-text.ld";

/// Errors of `bench hot-text`.
#[derive(Debug, thiserror::Error)]
pub enum HotTextError {
    /// The build or the bench could not run.
    #[error(transparent)]
    Run(#[from] TestError),
    /// The profiled runs left no profile naming the binary.
    #[error("callgrind profiled no function of {0}")]
    NoProfile(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HotTextError + '_ {
    move |source| HotTextError::Run(io_error(path)(source))
}

/// Builds the function with its symbols, profiles `runs` cold starts and writes the script.
pub fn run(python: &str, runs: u32) -> Result<ExitCode, HotTextError> {
    let root = workspace_root();
    let target = root.join("target").join("hot-text");
    // Without the script: valgrind attributes code outside the `.text` section to no object.
    let env = [
        ("CARGO_TARGET_DIR", target.display().to_string()),
        ("CARGO_PROFILE_RELEASE_STRIP", "none".to_owned()),
        ("SECRETS_HOT_TEXT", "off".to_owned()),
    ];
    // The link map says which input section holds each function (mangled names: no demangling).
    let map = target.join("hot-text.map");
    let build = ["rustc", "--release", "-p", PACKAGE, "--bin", PACKAGE, "--"];
    let link_map = [
        OsString::from(format!("-Clink-arg=-Wl,-Map,{}", map.display())),
        OsString::from("-Clink-arg=-Wl,--no-demangle"),
    ];
    if !cargo_status(&root, &build, &link_map, &env)?.success() {
        return Ok(ExitCode::FAILURE);
    }
    let binary = target.join("release").join(PACKAGE);
    let sections = input_sections(&std::fs::read_to_string(&map).map_err(io(&map))?);
    let profiles = tempfile::tempdir().map_err(io(&target))?;
    let wrapper = profiles.path().join("callgrind.sh");
    // Not `exec`: the bench stops the shell, and valgrind writes the profile as the binary exits.
    let script = format!(
        "#!/bin/sh\nvalgrind --tool=callgrind --demangle=no --callgrind-out-file={}/callgrind.out.%p {}\n",
        profiles.path().display(),
        binary.display()
    );
    std::fs::write(&wrapper, script).map_err(io(&wrapper))?;
    make_executable(&wrapper)?;
    if bench::cold_start(python, runs, Some(&wrapper))? != ExitCode::SUCCESS {
        return Ok(ExitCode::FAILURE);
    }

    let mut outputs: Vec<PathBuf> = std::fs::read_dir(profiles.path())
        .map_err(io(profiles.path()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("callgrind.out."))
        })
        .collect();
    outputs.sort();
    let mut functions = Vec::new();
    for output in &outputs {
        let text = std::fs::read_to_string(output).map_err(io(output))?;
        functions.extend(functions_run(&text, &binary));
    }
    if functions.is_empty() {
        return Err(HotTextError::NoProfile(binary));
    }
    let script = linker_script(&functions, &sections);
    let path = root.join(SCRIPT);
    std::fs::write(&path, &script).map_err(io(&path))?;
    println!(
        "xtask: {} ({} patterns from {} profiles)",
        path.display(),
        script
            .lines()
            .filter(|line| line.starts_with("    "))
            .count(),
        outputs.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn make_executable(path: &Path) -> Result<(), HotTextError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io(path))
}

/// The functions of the object `binary` that ran, in the order a callgrind profile lists them.
///
/// The format (callgrind's "name compression"): `ob=(id) path` and `fn=(id) name` set the
/// current object and function, the name given only the first time an id appears (also in the
/// `cob=`/`cfn=` lines of calls); later lines give the id alone.
fn functions_run(profile: &str, binary: &Path) -> Vec<String> {
    let binary = binary.to_string_lossy();
    let mut objects = HashMap::new();
    let mut names = HashMap::new();
    let mut in_binary = false;
    let mut run = Vec::new();
    for line in profile.lines() {
        let Some((kind, rest)) = line.split_once('=') else {
            continue;
        };
        let (id, name) = match rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((id, name)) => (id, name.trim()),
            None => continue,
        };
        match kind {
            "ob" | "cob" => {
                if !name.is_empty() {
                    objects.insert(id.to_owned(), name.to_owned());
                }
                if kind == "ob" {
                    in_binary = objects.get(id).is_some_and(|object| *object == binary);
                }
            }
            "fn" | "cfn" => {
                if !name.is_empty() {
                    names.insert(id.to_owned(), name.to_owned());
                }
                if kind == "fn"
                    && in_binary
                    && let Some(name) = names.get(id)
                {
                    run.push(name.clone());
                }
            }
            _ => {}
        }
    }
    run
}

/// The section pattern of the function `symbol`, with what differs between builds as `*`;
/// `None` for a name that is not a symbol (callgrind names code without one by its address).
fn pattern(symbol: &str) -> Option<String> {
    let symbol_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    if symbol.is_empty() || symbol.starts_with("0x") || !symbol.chars().all(symbol_char) {
        return None;
    }
    // LTO renames a local symbol that clashes by appending `.<n>`, numbered per build.
    let symbol = match symbol.rsplit_once('.') {
        Some((name, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            return pattern(name).map(|p| if p.ends_with('*') { p } else { p + "*" });
        }
        _ => symbol,
    };
    if !symbol.starts_with("_R") {
        return Some(symbol.to_owned());
    }
    // v0: a crate root is `C` + `s<base-62>_` (its hash) + identifier; a back-reference is
    // `B<base-62>_`. Either can be mistaken for part of an identifier here; a `*` there only
    // widens the pattern, which still matches the symbol it came from.
    let bytes = symbol.as_bytes();
    let mut out = String::with_capacity(symbol.len());
    let mut i = 0;
    while i < bytes.len() {
        let (prefix, start) = match (bytes[i], bytes.get(i + 1)) {
            (b'C', Some(b's')) => ("Cs", i + 2),
            (b'B', _) => ("B", i + 1),
            _ => {
                out.push(char::from(bytes[i]));
                i += 1;
                continue;
            }
        };
        let digits = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let end = start + digits;
        let hashed = bytes.get(end) == Some(&b'_') && (prefix == "B" || digits > 0);
        if hashed {
            out.push_str(prefix);
            out.push_str("*_");
            i = end + 1;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    // A generic function's name ends with the crate that instantiated it (a crate root, or a
    // back-reference to one); which crate's copy a build keeps varies, so that becomes `*`.
    let instantiated_at = ["Cs*_", "B*_"].into_iter().find_map(|root| {
        let start = out.rfind(root)?;
        let rest = &out[start + root.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (len, name) = rest.split_at(digits);
        let crate_name = !name.is_empty() && len.parse::<usize>().ok() == Some(name.len());
        (crate_name || (root == "B*_" && rest.is_empty())).then_some(start)
    });
    if let Some(start) = instantiated_at.filter(|&start| start > 2) {
        out.truncate(start);
        out.push('*');
    }
    Some(out)
}

/// Where the linker put a function: the input file and section holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InputSection {
    file: String,
    section: String,
}

/// The input section of each symbol in an lld link map (`-Map`, with `--no-demangle`): a line
/// `VMA LMA Size Align <file>:(<section>)` opens an input section, and the symbol lines after it
/// (`VMA LMA Size Align <symbol>`) are in it.
fn input_sections(map: &str) -> HashMap<String, InputSection> {
    let mut sections = HashMap::new();
    let mut current: Option<InputSection> = None;
    for line in map.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, _, _, _, rest @ ..] = fields.as_slice() else {
            continue;
        };
        let rest = rest.join(" ");
        if let Some((file, section)) = rest.rsplit_once(":(") {
            current = section.strip_suffix(')').map(|section| InputSection {
                file: file.to_owned(),
                section: section.to_owned(),
            });
        } else if let Some(input) = &current {
            sections.insert(rest, input.clone());
        }
    }
    sections
}

/// The pattern of an input section holding more than one function (an object file's `.text`):
/// the section of that archive member, whatever its archive's path and its hashed name prefix
/// (`1e176ea429d6cb57-bignum_inv_p521.o`).
fn file_pattern(input: &InputSection) -> Option<String> {
    let member = input.file.rsplit_once('(')?.1.strip_suffix(')')?;
    let member = match member.split_once('-') {
        Some((hash, rest)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => rest,
        _ => member,
    };
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    (plain(member) && plain(&input.section)).then(|| format!("*-{member}({})", input.section))
}

/// The linker script: one output section `.text.hot` before `.text`, holding `functions` in
/// order (each pattern once), placed by what `sections` says holds them.
fn linker_script(functions: &[String], sections: &HashMap<String, InputSection>) -> String {
    let mut seen = HashSet::new();
    let mut script = String::from(
        "/* The code a cold start of the secrets function runs, gathered before the rest of the\n \
         * text so that it takes few pages. Generated by `cargo xtask bench hot-text`; see\n \
         * xtask/src/hot_text.rs. Linked into release builds by crates/secrets/build.rs. */\n\
         SECTIONS {\n  .text.hot : {\n",
    );
    for function in functions {
        let own_section = |input: &InputSection| input.section.starts_with(".text.");
        let line = match sections.get(function) {
            Some(input) if !own_section(input) => file_pattern(input),
            // A function LLVM deems cold (`#[cold]` and what only leads to it) has its section
            // named `.text.unlikely.<symbol>`.
            _ => pattern(function).map(|p| format!("*(.text.{p} .text.unlikely.{p})")),
        };
        if let Some(line) = line.filter(|line| seen.insert(line.clone())) {
            script.push_str("    ");
            script.push_str(&line);
            script.push('\n');
        }
    }
    script.push_str("  }\n} INSERT BEFORE .text;\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "\
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) /lib/libc.so.6
fn=(1) malloc
0 5
ob=(2) /build/secrets
fn=(2) _RNvNtCs6d7GoaNTBIz_10std_detect6detect21detect_and_initialize
0 7
cob=(1)
cfn=(1)
calls=1 0
0 3
cfn=(3) _RNvCslNYArtu3iFV_5alloc6format
calls=1 0
0 2
fn=(3)
0 4
ob=(1)
fn=(4) free
0 1
";

    #[test]
    fn the_functions_of_the_binary_that_ran_are_listed_in_profile_order() {
        assert_eq!(
            functions_run(PROFILE, Path::new("/build/secrets")),
            [
                "_RNvNtCs6d7GoaNTBIz_10std_detect6detect21detect_and_initialize",
                "_RNvCslNYArtu3iFV_5alloc6format",
            ]
        );
        assert!(functions_run(PROFILE, Path::new("/other")).is_empty());
    }

    #[test]
    fn crate_hashes_and_back_references_become_wildcards() {
        assert_eq!(
            pattern("_RNvNtCs6d7GoaNTBIz_10std_detect6detect5cache21detect_and_initialize")
                .as_deref(),
            Some("_RNvNtCs*_10std_detect6detect5cache21detect_and_initialize")
        );
        assert_eq!(
            pattern("_RINvNtCs1a_4core3ptr13drop_in_placeNtB4_5ErrorEB4_").as_deref(),
            Some("_RINvNtCs*_4core3ptr13drop_in_placeNtB*_5ErrorE*")
        );
        assert_eq!(
            pattern("_RINvCs6d7GoaNTBIz_8smallvec10infallibleuECsA1b_14icu_normalizer").as_deref(),
            Some("_RINvCs*_8smallvec10infallibleuE*"),
            "the instantiating crate"
        );
        assert_eq!(
            pattern("_RNvNtCs1a_5alloc5boxed14box_new_uninit.7055").as_deref(),
            Some("_RNvNtCs*_5alloc5boxed14box_new_uninit*"),
            "a suffix LTO numbered"
        );
        // A C function keeps its name; an address or an odd name is no pattern.
        assert_eq!(pattern("EC_POINT_mul").as_deref(), Some("EC_POINT_mul"));
        assert_eq!(pattern("0x00000000002a4e60"), None);
        assert_eq!(pattern("foo'2"), None);
        assert_eq!(pattern("_ZN3foo$LT$T$GT$3bar17h0123456789abcdefE"), None);
        assert_eq!(pattern(""), None);
    }

    #[test]
    fn every_pattern_matches_the_symbol_it_came_from() {
        for symbol in [
            "_RNvNtCs6d7GoaNTBIz_10std_detect6detect21detect_and_initialize",
            "_RINvNtCs1a_4core3ptr13drop_in_placeNtB4_5ErrorEB4_",
            "_RNvMs_NtCsBytes_5bytes5BytesNtB4_5Bytes3new",
            "_RNvCs_3Csv4Bee_",
        ] {
            let pattern = pattern(symbol).unwrap_or_default();
            assert!(glob(&pattern, symbol), "{pattern} does not match {symbol}");
        }
    }

    const MAP: &str = "\
             VMA              LMA     Size Align Out     In      Symbol
          2a4cc0           2a4cc0   6b60fb    64 .text
          2a4cc0           2a4cc0      c6f    16         /t/deps/secrets-7bb3.secrets.ad5c-cgu.0.rcgu.o:(.text._RNvCsA_1a1f)
          2a4cc0           2a4cc0      c6f     1                 _RNvCsA_1a1f
          5eff85           5eff85       bd     1         /t/deps/secrets-7bb3.secrets.ad5c-cgu.0.rcgu.o:(.text.unlikely.cold)
          5eff85           5eff85       bd     1                 cold
          943120           943120     1bea    32         /t/deps/rustcXO0ki9/libaws_lc_sys-85c7.rlib(347b39fbbb4ff1c7-bignum_inv_p521.o):(.text)
          943120           943120     1bea     1                 aws_lc_0_47_0_bignum_inv_p521
          9432dc           9432dc        0     1                 Lbignum_inv_p521_loop
          943d10           943d10       40    16         /t/deps/rustcXO0ki9/libaws_lc_sys-85c7.rlib(347b39fbbb4ff1c7-bignum_add_p521.o):(.text)
          943d10           943d10       40     1                 aws_lc_0_47_0_bignum_add_p521
";

    #[test]
    fn the_link_map_says_which_input_section_holds_a_function() {
        let sections = input_sections(MAP);
        let asm = &sections["aws_lc_0_47_0_bignum_inv_p521"];
        assert_eq!(asm.section, ".text");
        assert_eq!(
            asm.file,
            "/t/deps/rustcXO0ki9/libaws_lc_sys-85c7.rlib(347b39fbbb4ff1c7-bignum_inv_p521.o)"
        );
        assert_eq!(sections["Lbignum_inv_p521_loop"], *asm);
        assert_eq!(sections["cold"].section, ".text.unlikely.cold");
        assert_eq!(
            file_pattern(asm).as_deref(),
            Some("*-bignum_inv_p521.o(.text)")
        );
    }

    #[test]
    fn the_script_lists_each_pattern_once_before_the_text() {
        let functions = [
            "_RNvCsA_1a1f",
            "_RNvCsB_1a1f",
            "0x10",
            "cold",
            "aws_lc_0_47_0_bignum_inv_p521",
            "Lbignum_inv_p521_loop",
            "aws_lc_0_47_0_bignum_add_p521",
        ]
        .map(str::to_owned);
        let script = linker_script(&functions, &input_sections(MAP));
        let patterns: Vec<&str> = script
            .lines()
            .filter(|line| line.starts_with("    "))
            .map(str::trim)
            .collect();
        assert_eq!(
            patterns,
            [
                "*(.text._RNvCs*_1a1f .text.unlikely._RNvCs*_1a1f)",
                "*(.text.cold .text.unlikely.cold)",
                "*-bignum_inv_p521.o(.text)",
                "*-bignum_add_p521.o(.text)",
            ]
        );
        assert!(script.trim_end().ends_with("} INSERT BEFORE .text;"));
    }

    /// A linker's glob: `*` matches any run of characters.
    fn glob(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, tail)) => {
                let Some(rest) = text.strip_prefix(head) else {
                    return false;
                };
                (0..=rest.len())
                    .any(|skip| rest.is_char_boundary(skip) && glob(tail, &rest[skip..]))
            }
        }
    }
}
