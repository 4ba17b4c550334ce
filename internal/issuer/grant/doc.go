// Package grant is the token endpoint: a Dispatcher that parses the request, authenticates
// the client (Authenticator: client_secret_basic, client_secret_post, private_key_jwt, none
// — exactly the one the client registered), applies the scope and audience policy, and only
// then hands the request to the Grant for its grant_type. No grant can skip those checks
// because no grant sees a request before they pass.
package grant
