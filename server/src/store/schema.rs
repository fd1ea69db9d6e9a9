// The tables of migrations/, in diesel's terms (portable types only: see store/db.rs).

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Nullable<Text>,
        token_endpoint_auth_method -> Text,
        grant_types -> Text,
        scopes -> Text,
        audiences -> Text,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        state -> Text,
        public_jwk -> Text,
        private_key_encrypted -> Text,
        created_at -> BigInt,
        activated_at -> Nullable<BigInt>,
        retired_at -> Nullable<BigInt>,
        remove_after -> Nullable<BigInt>,
    }
}

diesel::table! {
    cluster_state (name) {
        name -> Text,
        generation -> BigInt,
    }
}
