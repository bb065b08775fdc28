-- Model providers (with encrypted credentials) and the model registry.

CREATE TABLE model_providers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    api_base TEXT NOT NULL,
    api_style TEXT NOT NULL,
    api_key_encrypted TEXT,
    api_key_hint TEXT,
    extra_headers_encrypted TEXT,
    extra_header_names TEXT NOT NULL DEFAULT '[]',
    connect_timeout_secs INTEGER NOT NULL,
    first_token_timeout_secs INTEGER NOT NULL,
    idle_timeout_secs INTEGER NOT NULL,
    request_timeout_secs INTEGER NOT NULL,
    max_retries INTEGER NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX model_providers_label_key ON model_providers (label);
CREATE UNIQUE INDEX model_providers_one_default ON model_providers (is_default) WHERE is_default;

CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id INTEGER NOT NULL REFERENCES model_providers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    display_name TEXT,
    description TEXT,
    supports_reasoning BOOLEAN NOT NULL DEFAULT 0,
    supports_vision BOOLEAN NOT NULL DEFAULT 0,
    supports_tools BOOLEAN NOT NULL DEFAULT 1,
    supports_structured_output BOOLEAN NOT NULL DEFAULT 1,
    supports_audio BOOLEAN NOT NULL DEFAULT 0,
    context_window INTEGER,
    max_output_tokens INTEGER,
    price_input_per_mtok REAL,
    price_output_per_mtok REAL,
    price_cached_input_per_mtok REAL,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    is_default BOOLEAN NOT NULL DEFAULT 0,
    is_default_title BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX models_provider_name_key ON models (provider_id, name);
CREATE UNIQUE INDEX models_one_default ON models (is_default) WHERE is_default;
CREATE UNIQUE INDEX models_one_default_title ON models (is_default_title) WHERE is_default_title;
