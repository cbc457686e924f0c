package awsfake

import (
	"encoding/base64"
	"fmt"
	"path"
	"slices"
	"strings"
)

// The fake's IAM: one identity-based policy, a list of allowed actions,
// with no resources or conditions (README: IAM condition keys are not
// verified). Key policies and grants are not modelled: a key is usable
// when the policy allows the KMS actions below.

// SetPolicy makes the caller's IAM policy allow exactly these actions
// ("ec2:RunInstances", "kms:CreateGrant", "ec2:Describe*"; IAM's * and ?
// wildcards, case-insensitive). nil allows everything, the default.
func (s *Server) SetPolicy(allowed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policy = slices.Clone(allowed)
	if allowed != nil && s.policy == nil {
		s.policy = []string{}
	}
}

// allows reports whether the policy allows an IAM action.
func (s *Server) allows(action string) bool {
	if s.policy == nil {
		return true
	}
	for _, p := range s.policy {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(action)); ok {
			return true
		}
	}
	return false
}

// denied returns the error code and message of a call the policy does not
// allow, or "". Besides the call's own action:
//   - tagging on creation needs ec2:CreateTags
//     (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html);
//   - launching with an instance profile needs iam:PassRole on its role
//     (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/iam-roles-for-amazon-ec2.html#permission-to-pass-iam-roles).
//
// EC2 answers UnauthorizedOperation without naming the action (it is in
// the encoded message), ELBv2 AccessDenied naming it.
func (s *Server) denied(service, action string, q query) (code, msg string) {
	need := []string{service + ":" + action}
	if service == "ec2" {
		if len(q.structs("TagSpecification")) > 0 {
			need = append(need, "ec2:CreateTags")
		}
		if action == "RunInstances" && (q.Get("IamInstanceProfile.Arn") != "" || q.Get("IamInstanceProfile.Name") != "") {
			need = append(need, "iam:PassRole")
		}
	}
	for i, a := range need {
		if s.allows(a) {
			continue
		}
		code := map[string]string{"ec2": "UnauthorizedOperation"}[service]
		if code == "" {
			code = "AccessDenied"
		}
		if i == 0 {
			// As Fail injects it.
			return code, faultMessage(service, action, code)
		}
		if service == "ec2" {
			return "UnauthorizedOperation", "You are not authorized to perform this operation. Encoded authorization failure message: " + base64.StdEncoding.EncodeToString([]byte(a))
		}
		return "AccessDenied", fmt.Sprintf("User: arn:aws:sts::%s:assumed-role/triad/session is not authorized to perform: %s", account, a)
	}
	return "", ""
}

// kmsVolumeActions are what the caller must be allowed on the KMS key of
// an encrypted snapshot for EC2 to create a volume from it when it
// launches or starts an instance: "Permissions for users" in
// https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption-requirements.html
// lists kms:CreateGrant, kms:Decrypt, kms:DescribeKey,
// kms:GenerateDataKeyWithoutPlainText and kms:ReEncrypt (IAM's actions
// are ReEncryptFrom and ReEncryptTo). Which of them a launch really
// exercises is not documented; the fake requires them all.
var kmsVolumeActions = []string{
	"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
	"kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo",
}

// KMSVolumeActions returns the KMS actions the fake requires to launch or
// start an instance whose volumes are encrypted with a customer managed key.
func KMSVolumeActions() []string { return slices.Clone(kmsVolumeActions) }

// launchFailure is why EC2 fails the launch (or start) of an instance
// with these volumes after accepting the call, or "": when the caller
// cannot use a volume's KMS key, the instance goes pending → terminated
// (RunInstances) or pending → stopped (StartInstances) with state reason
// Client.InternalError, "Client.InternalError: Client error on launch"
// (https://repost.aws/knowledge-center/encrypted-volumes-stops-immediately).
func (s *Server) launchFailure(volumes []*volume) (code, msg string) {
	for _, v := range volumes {
		if v == nil || v.kmsKey == "" {
			continue
		}
		for _, a := range kmsVolumeActions {
			if !s.allows(a) {
				return "Client.InternalError", "Client.InternalError: Client error on launch"
			}
		}
	}
	return "", ""
}
