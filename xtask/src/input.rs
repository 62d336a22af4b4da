//! Input gathering of `cargo xtask bootstrap` and `cargo xtask deploy` (docs/original.md#provisioning).
//!
//! Every question has a command line flag, an environment variable and a prompt. The value of a
//! question is, in order of precedence:
//!
//! 1. its flag;
//! 2. its environment variable (names are prefixed, e.g. `FOURME_DOMAIN`, not the original's bare
//!    `domain`/`token` that collide with unrelated variables — docs/original.md#fixed-bugs item 12);
//! 3. the merged `default_input.json` files: every directory from the current one up to the root
//!    may hold one; nearer files win key by key, and when `ENV_4ME` names an object of a file,
//!    that object's entries override the file's own top-level entries before the merge;
//! 4. the question's built-in default.
//!
//! A value from 1 or 2 is used as is. A value from 3 or 4 is a *default*: it is used without
//! asking when `--yes` is given or when the merged defaults have `skipQuestionWithDefault` truthy
//! (as the original), otherwise it is shown in the prompt. With `--yes` a question without any
//! value is an error naming its flag and environment variable.
//!
//! Secrets (the client secret) have no flag (it would end up in shell history and process lists):
//! they come from their environment variable, a `default_input.json` (git-ignored), or are read
//! from standard input when it is not a terminal. On a terminal the prompt refuses (no echo-free
//! terminal input without an extra dependency) and asks for the environment variable. Secrets are
//! never printed: [`SecretValue`]'s `Debug` is redacted and prompts never show their default.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value};

/// Name of the defaults file looked up in every directory from the current one to the root.
pub const DEFAULTS_FILE: &str = "default_input.json";

/// Key of the defaults that makes questions with a default silent (the original's name).
pub const SKIP_KEY: &str = "skipQuestionWithDefault";

/// One question asked by a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    /// Key in `default_input.json` (the original's key, e.g. `serviceInstanceName`).
    pub key: &'static str,
    /// Long command line flag without dashes (`None` for secrets).
    pub flag: Option<&'static str>,
    /// Environment variable holding the value.
    pub env: &'static str,
    /// Prompt text.
    pub prompt: &'static str,
    /// Built-in default.
    pub default: Option<&'static str>,
    /// Whether the value is a secret (never printed, no flag).
    pub secret: bool,
}

/// 4me domain question.
pub const DOMAIN: Question = Question {
    key: "domain",
    flag: Some("domain"),
    env: "FOURME_DOMAIN",
    prompt: "Which 4me domain",
    default: Some("4me-demo.com"),
    secret: false,
};
/// 4me account question.
pub const ACCOUNT: Question = Question {
    key: "account",
    flag: Some("account"),
    env: "FOURME_ACCOUNT",
    prompt: "Which 4me account",
    default: Some("wdc"),
    secret: false,
};
/// Service instance question.
pub const SERVICE_INSTANCE: Question = Question {
    key: "serviceInstanceName",
    flag: Some("service-instance"),
    env: "FOURME_SERVICE_INSTANCE",
    prompt: "Which service instance (for integration engine)",
    default: Some("Mainframe 1"),
    secret: false,
};
/// Enabled offerings question (bootstrap).
pub const ENABLED_OFFERINGS: Question = Question {
    key: "enabledOfferings",
    flag: Some("enabled-offerings"),
    env: "FOURME_ENABLED_OFFERINGS",
    prompt: "Which app offerings should store secrets (* for all)",
    default: Some("*"),
    secret: false,
};
/// OAuth client id question (bootstrap).
pub const CLIENT_ID: Question = Question {
    key: "clientID",
    flag: Some("client-id"),
    env: "FOURME_CLIENT_ID",
    prompt: "Your client ID",
    default: None,
    secret: false,
};
/// OAuth client secret question (bootstrap).
pub const CLIENT_SECRET: Question = Question {
    key: "token",
    flag: None,
    env: "FOURME_CLIENT_SECRET",
    prompt: "Your client secret",
    default: None,
    secret: true,
};
/// AWS profile question.
pub const PROFILE: Question = Question {
    key: "profile",
    flag: Some("profile"),
    env: "AWS_PROFILE",
    prompt: "Which AWS profile",
    default: Some("staging"),
    secret: false,
};

/// Questions of `cargo xtask bootstrap`, in the original's order.
pub const BOOTSTRAP_QUESTIONS: [Question; 7] = [
    DOMAIN,
    ACCOUNT,
    SERVICE_INSTANCE,
    ENABLED_OFFERINGS,
    CLIENT_ID,
    CLIENT_SECRET,
    PROFILE,
];

/// Questions of `cargo xtask deploy <integration>`, in the original's order.
pub const DEPLOY_QUESTIONS: [Question; 4] = [DOMAIN, ACCOUNT, SERVICE_INSTANCE, PROFILE];

/// Flags shared by bootstrap and deploy (each question's flag, plus `--yes`).
#[derive(Debug, Clone, Default, Args)]
pub struct InputArgs {
    /// 4me domain (e.g. 4me-demo.com) [env: FOURME_DOMAIN].
    #[arg(long)]
    pub domain: Option<String>,
    /// 4me account id of the provider (e.g. wdc) [env: FOURME_ACCOUNT].
    #[arg(long)]
    pub account: Option<String>,
    /// Name of the 4me service instance of the integration engine [env: FOURME_SERVICE_INSTANCE].
    #[arg(long)]
    pub service_instance: Option<String>,
    /// App offering references allowed to store secrets, `*` for all (bootstrap)
    /// [env: FOURME_ENABLED_OFFERINGS].
    #[arg(long)]
    pub enabled_offerings: Option<String>,
    /// Client id of the provider's 4me OAuth application (bootstrap) [env: FOURME_CLIENT_ID].
    /// Its secret comes from FOURME_CLIENT_SECRET or standard input, never from a flag.
    #[arg(long)]
    pub client_id: Option<String>,
    /// AWS profile [env: AWS_PROFILE].
    #[arg(long)]
    pub profile: Option<String>,
    /// Ask nothing: use defaults, fail on a question without any value.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl InputArgs {
    /// The flag value given for a question, if any.
    fn flag_value(&self, question: &Question) -> Option<&str> {
        let value = match question.flag? {
            "domain" => &self.domain,
            "account" => &self.account,
            "service-instance" => &self.service_instance,
            "enabled-offerings" => &self.enabled_offerings,
            "client-id" => &self.client_id,
            "profile" => &self.profile,
            _ => &None,
        };
        value.as_deref()
    }
}

/// A secret string: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the code that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Errors of input gathering.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A `default_input.json` could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A `default_input.json` is not a JSON object.
    #[error("{path} is not a JSON object: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's content: it may hold a secret).
        reason: String,
    },
    /// `--yes` was given and a question has no value.
    #[error("no value for `{key}`: pass {how}")]
    Missing {
        /// The question key.
        key: &'static str,
        /// How to provide it (flag and/or environment variable).
        how: String,
    },
    /// A secret would have to be typed on a terminal.
    #[error(
        "`{key}` is a secret and is not read from a terminal (it would echo): set {env}, or pipe it on standard input"
    )]
    SecretOnTerminal {
        /// The question key.
        key: &'static str,
        /// Its environment variable.
        env: &'static str,
    },
    /// Reading an answer failed.
    #[error("cannot read the answer to `{key}`: {source}")]
    Prompt {
        /// The question key.
        key: &'static str,
        /// Underlying error.
        source: std::io::Error,
    },
    /// An answer was empty and there is no default.
    #[error("`{0}` needs a value")]
    Empty(&'static str),
}

/// Whether a defaults value counts as given (the original's JavaScript truthiness).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A defaults value as the string answer it stands for (`None` when not truthy or not scalar).
fn as_answer(value: &Value) -> Option<String> {
    if !truthy(value) {
        return None;
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        _ => None,
    }
}

/// Reads one defaults file, applying its `env_4me` section; `None` when the file does not exist.
fn read_defaults_file(
    path: &Path,
    env_4me: Option<&str>,
) -> Result<Option<Map<String, Value>>, InputError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(InputError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let parsed: Value = serde_json::from_str(&text).map_err(|err| InputError::Parse {
        path: path.to_path_buf(),
        // Line and column only: the file may hold a secret.
        reason: format!(
            "invalid JSON at line {} column {}",
            err.line(),
            err.column()
        ),
    })?;
    let Value::Object(mut map) = parsed else {
        return Err(InputError::Parse {
            path: path.to_path_buf(),
            reason: "the top level is not an object".into(),
        });
    };
    if let Some(env) = env_4me.filter(|env| !env.is_empty())
        && let Some(Value::Object(section)) = map.get(env).cloned()
    {
        map.extend(section);
    }
    Ok(Some(map))
}

/// The merged defaults of every `default_input.json` from `start` up to the root (nearest wins).
pub fn load_defaults(
    start: &Path,
    env_4me: Option<&str>,
) -> Result<Map<String, Value>, InputError> {
    let mut files = Vec::new();
    for dir in start.ancestors() {
        if let Some(map) = read_defaults_file(&dir.join(DEFAULTS_FILE), env_4me)? {
            files.push(map);
        }
    }
    let mut merged = Map::new();
    for map in files.into_iter().rev() {
        merged.extend(map);
    }
    Ok(merged)
}

/// Asks questions; the terminal implementation is [`StdioPrompter`].
pub trait Prompter {
    /// Asks a plain question; an empty answer returns `Ok(None)`.
    fn ask(
        &mut self,
        question: &Question,
        default: Option<&str>,
    ) -> Result<Option<String>, InputError>;
    /// Asks for a secret; an empty answer returns `Ok(None)`.
    fn ask_secret(&mut self, question: &Question) -> Result<Option<SecretValue>, InputError>;
}

/// Prompts on standard error and reads answers from standard input.
#[derive(Debug, Default)]
pub struct StdioPrompter;

impl StdioPrompter {
    /// Reads one line of standard input, without its line ending.
    fn read_line(key: &'static str) -> Result<String, InputError> {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|source| InputError::Prompt { key, source })?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

impl Prompter for StdioPrompter {
    fn ask(
        &mut self,
        question: &Question,
        default: Option<&str>,
    ) -> Result<Option<String>, InputError> {
        let mut stderr = std::io::stderr();
        let shown = match default {
            Some(default) => format!("{} ({default}): ", question.prompt),
            None => format!("{}: ", question.prompt),
        };
        let _ = stderr.write_all(shown.as_bytes());
        let _ = stderr.flush();
        let answer = Self::read_line(question.key)?.trim().to_owned();
        Ok((!answer.is_empty()).then_some(answer))
    }

    fn ask_secret(&mut self, question: &Question) -> Result<Option<SecretValue>, InputError> {
        if std::io::stdin().is_terminal() {
            return Err(InputError::SecretOnTerminal {
                key: question.key,
                env: question.env,
            });
        }
        let answer = Self::read_line(question.key)?;
        Ok((!answer.is_empty()).then(|| SecretValue::new(answer)))
    }
}

/// The answers of a command, by question key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    values: BTreeMap<&'static str, String>,
    secrets: BTreeMap<&'static str, SecretValue>,
}

impl Answers {
    /// The answer to a plain question (empty when it was not asked).
    pub fn get(&self, question: &Question) -> &str {
        self.values
            .get(question.key)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The answer to a secret question, if it was asked.
    pub fn secret(&self, question: &Question) -> Option<&SecretValue> {
        self.secrets.get(question.key)
    }

    /// The plain answers, for printing the plan (secrets are not included).
    pub fn plain(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

/// Where the values of the questions come from besides the flags.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Merged `default_input.json` files.
    pub defaults: Map<String, Value>,
    /// Environment variables (only the questions' variables are looked up).
    pub env: BTreeMap<String, String>,
}

impl Sources {
    /// Defaults walking up from `start` with the process's `ENV_4ME`, and the process
    /// environment's values of the questions' variables.
    pub fn from_process(start: &Path, questions: &[Question]) -> Result<Self, InputError> {
        let env_4me = std::env::var("ENV_4ME").ok();
        let defaults = load_defaults(start, env_4me.as_deref())?;
        let env = questions
            .iter()
            .filter_map(|q| {
                std::env::var(q.env)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (q.env.to_owned(), v))
            })
            .collect();
        Ok(Self { defaults, env })
    }

    /// Whether questions with a default are skipped.
    fn skip_with_default(&self) -> bool {
        self.defaults.get(SKIP_KEY).is_some_and(truthy)
    }
}

/// How to provide a question's value, for error messages.
fn how_to_provide(question: &Question) -> String {
    match question.flag {
        Some(flag) => format!("--{flag} or set {}", question.env),
        None => format!("set {} (or pipe it on standard input)", question.env),
    }
}

/// Answers `questions` from the flags, the environment, the defaults and finally the prompter.
pub fn gather(
    questions: &[Question],
    args: &InputArgs,
    sources: &Sources,
    prompter: &mut dyn Prompter,
) -> Result<Answers, InputError> {
    let mut answers = Answers::default();
    let skip = args.yes || sources.skip_with_default();
    for question in questions {
        let given = args
            .flag_value(question)
            .map(str::to_owned)
            .or_else(|| sources.env.get(question.env).cloned())
            .filter(|v| !v.is_empty());
        let default = sources
            .defaults
            .get(question.key)
            .and_then(as_answer)
            .or_else(|| question.default.map(str::to_owned));
        let value = match (given, default) {
            (Some(value), _) => value,
            (None, Some(default)) if skip => default,
            (None, None) if args.yes => {
                return Err(InputError::Missing {
                    key: question.key,
                    how: how_to_provide(question),
                });
            }
            (None, default) if question.secret => match (prompter.ask_secret(question)?, default) {
                (Some(secret), _) => {
                    answers.secrets.insert(question.key, secret);
                    continue;
                }
                (None, Some(default)) => default,
                (None, None) => return Err(InputError::Empty(question.key)),
            },
            (None, default) => match (prompter.ask(question, default.as_deref())?, default) {
                (Some(answer), _) => answer,
                (None, Some(default)) => default,
                (None, None) => return Err(InputError::Empty(question.key)),
            },
        };
        if question.secret {
            answers
                .secrets
                .insert(question.key, SecretValue::new(value));
        } else {
            answers.values.insert(question.key, value);
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Answers prompts from a script and records what was asked.
    #[derive(Default)]
    struct Scripted {
        answers: Vec<Option<String>>,
        asked: Vec<(String, Option<String>)>,
    }

    impl Prompter for Scripted {
        fn ask(
            &mut self,
            question: &Question,
            default: Option<&str>,
        ) -> Result<Option<String>, InputError> {
            self.asked
                .push((question.key.to_owned(), default.map(str::to_owned)));
            Ok(self.answers.remove(0))
        }
        fn ask_secret(&mut self, question: &Question) -> Result<Option<SecretValue>, InputError> {
            self.asked.push((question.key.to_owned(), None));
            Ok(self.answers.remove(0).map(SecretValue::new))
        }
    }

    fn write(path: &Path, json: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, json).unwrap();
    }

    #[test]
    fn nearest_file_wins_and_env_4me_section_overrides_its_own_file() {
        // The original's fixture (docs/original.md#provisioning).
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(DEFAULTS_FILE),
            r#"{"skip":true,"A":"top A","B":"top B","c":"top c"}"#,
        );
        let sub = dir.path().join("sub");
        write(
            &sub.join(DEFAULTS_FILE),
            r#"{"B":"sub B","c":"sub c","qa":{"c":"qa c"}}"#,
        );
        let deeper = sub.join("deeper");
        fs::create_dir_all(&deeper).unwrap();
        let merged = load_defaults(&deeper, Some("qa")).unwrap();
        assert_eq!(merged["A"], "top A");
        assert_eq!(merged["B"], "sub B");
        assert_eq!(merged["c"], "qa c");
        assert!(merged.get("D").is_none());

        let without_env = load_defaults(&deeper, None).unwrap();
        assert_eq!(without_env["c"], "sub c");
    }

    #[test]
    fn child_top_level_beats_parent_env_section() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(DEFAULTS_FILE),
            r#"{"domain":"top","qa":{"domain":"top qa","account":"qa acc"}}"#,
        );
        let sub = dir.path().join("sub");
        write(&sub.join(DEFAULTS_FILE), r#"{"domain":"sub"}"#);
        let merged = load_defaults(&sub, Some("qa")).unwrap();
        assert_eq!(merged["domain"], "sub");
        assert_eq!(merged["account"], "qa acc");
    }

    #[test]
    fn invalid_defaults_file_is_an_error_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(DEFAULTS_FILE),
            r#"{"token": "s3cr3t-value""#,
        );
        let err = load_defaults(dir.path(), None).unwrap_err();
        assert!(matches!(err, InputError::Parse { .. }));
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        write(&dir.path().join(DEFAULTS_FILE), "[1]");
        assert!(matches!(
            load_defaults(dir.path(), None),
            Err(InputError::Parse { .. })
        ));
    }

    #[test]
    fn flags_beat_environment_beat_defaults_with_yes() {
        let mut sources = Sources::default();
        sources.defaults.insert("domain".into(), "file.com".into());
        sources.defaults.insert("account".into(), "file-acc".into());
        sources
            .defaults
            .insert("serviceInstanceName".into(), "File SI".into());
        sources
            .env
            .insert("FOURME_ACCOUNT".into(), "env-acc".into());
        sources
            .env
            .insert("FOURME_SERVICE_INSTANCE".into(), "Env SI".into());
        let args = InputArgs {
            service_instance: Some("Flag SI".into()),
            yes: true,
            ..InputArgs::default()
        };
        let mut prompter = Scripted::default();
        let answers = gather(&DEPLOY_QUESTIONS, &args, &sources, &mut prompter).unwrap();
        assert_eq!(answers.get(&DOMAIN), "file.com");
        assert_eq!(answers.get(&ACCOUNT), "env-acc");
        assert_eq!(answers.get(&SERVICE_INSTANCE), "Flag SI");
        assert_eq!(answers.get(&PROFILE), "staging");
        assert!(prompter.asked.is_empty());
    }

    #[test]
    fn yes_without_a_value_names_the_flag_and_variable() {
        let args = InputArgs {
            yes: true,
            ..InputArgs::default()
        };
        let err = gather(
            &BOOTSTRAP_QUESTIONS,
            &args,
            &Sources::default(),
            &mut Scripted::default(),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("--client-id"), "{message}");
        assert!(message.contains("FOURME_CLIENT_ID"), "{message}");

        let args = InputArgs {
            yes: true,
            client_id: Some("id".into()),
            ..InputArgs::default()
        };
        let err = gather(
            &BOOTSTRAP_QUESTIONS,
            &args,
            &Sources::default(),
            &mut Scripted::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, InputError::Missing { key: "token", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("FOURME_CLIENT_SECRET"));
    }

    #[test]
    fn prompts_show_defaults_and_empty_answers_take_them() {
        let mut sources = Sources::default();
        sources.defaults.insert("account".into(), "file-acc".into());
        let mut prompter = Scripted {
            answers: vec![Some("typed.com".into()), None, None, Some("prod".into())],
            ..Scripted::default()
        };
        let answers = gather(
            &DEPLOY_QUESTIONS,
            &InputArgs::default(),
            &sources,
            &mut prompter,
        )
        .unwrap();
        assert_eq!(answers.get(&DOMAIN), "typed.com");
        assert_eq!(answers.get(&ACCOUNT), "file-acc");
        assert_eq!(answers.get(&SERVICE_INSTANCE), "Mainframe 1");
        assert_eq!(answers.get(&PROFILE), "prod");
        assert_eq!(
            prompter.asked,
            vec![
                ("domain".to_owned(), Some("4me-demo.com".to_owned())),
                ("account".to_owned(), Some("file-acc".to_owned())),
                (
                    "serviceInstanceName".to_owned(),
                    Some("Mainframe 1".to_owned())
                ),
                ("profile".to_owned(), Some("staging".to_owned())),
            ]
        );
    }

    #[test]
    fn skip_question_with_default_asks_only_questions_without_default() {
        let mut sources = Sources::default();
        sources.defaults.insert(SKIP_KEY.into(), true.into());
        let mut prompter = Scripted {
            answers: vec![Some("my-client".into()), Some("the-secret".into())],
            ..Scripted::default()
        };
        let answers = gather(
            &BOOTSTRAP_QUESTIONS,
            &InputArgs::default(),
            &sources,
            &mut prompter,
        )
        .unwrap();
        let asked: Vec<&str> = prompter.asked.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(asked, vec!["clientID", "token"]);
        assert_eq!(answers.get(&CLIENT_ID), "my-client");
        assert_eq!(answers.get(&ENABLED_OFFERINGS), "*");
        assert_eq!(
            answers.secret(&CLIENT_SECRET).map(SecretValue::expose),
            Some("the-secret")
        );
    }

    #[test]
    fn secrets_come_from_the_environment_and_are_never_printed() {
        let mut sources = Sources::default();
        sources
            .env
            .insert("FOURME_CLIENT_SECRET".into(), "very-secret-42".into());
        let args = InputArgs {
            yes: true,
            client_id: Some("cid".into()),
            ..InputArgs::default()
        };
        let answers = gather(
            &BOOTSTRAP_QUESTIONS,
            &args,
            &sources,
            &mut Scripted::default(),
        )
        .unwrap();
        let secret = answers.secret(&CLIENT_SECRET).unwrap();
        assert_eq!(secret.expose(), "very-secret-42");
        assert!(!format!("{answers:?}").contains("very-secret-42"));
        assert!(!format!("{secret}").contains("very-secret-42"));
        assert!(answers.plain().all(|(_, v)| v != "very-secret-42"));
        assert_eq!(answers.get(&CLIENT_ID), "cid");
    }

    #[test]
    fn non_string_defaults_and_falsy_values() {
        let mut sources = Sources::default();
        sources.defaults.insert("account".into(), 42.into());
        sources.defaults.insert("domain".into(), "".into());
        sources.defaults.insert(SKIP_KEY.into(), 0.into());
        let args = InputArgs {
            yes: true,
            ..InputArgs::default()
        };
        let answers = gather(&DEPLOY_QUESTIONS, &args, &sources, &mut Scripted::default()).unwrap();
        assert_eq!(answers.get(&ACCOUNT), "42");
        assert_eq!(answers.get(&DOMAIN), "4me-demo.com");
        assert!(!sources.skip_with_default());
    }

    #[test]
    fn from_process_walks_up_from_the_start_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(DEFAULTS_FILE),
            r#"{"profile":"from-file"}"#,
        );
        let nested = dir.path().join("a/b");
        fs::create_dir_all(&nested).unwrap();
        let sources = Sources::from_process(&nested, &[]).unwrap();
        assert_eq!(sources.defaults["profile"], "from-file");
        assert!(sources.env.is_empty());
    }
}
