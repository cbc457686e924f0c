package testkube_test

import (
	"slices"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/triad-k8s/triad/internal/testkube"
)

func TestStartServesTheAPIToAClusterAdmin(t *testing.T) {
	c := testkube.Start(t)
	ctx := t.Context()

	review, err := c.Client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("asking the API server who the client is: %v", err)
	}
	if groups := review.Status.UserInfo.Groups; !slices.Contains(groups, "system:masters") {
		t.Errorf("the client is %q in groups %v, want a member of system:masters", review.Status.UserInfo.Username, groups)
	}

	created, err := c.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a ConfigMap: %v", err)
	}
	got, err := c.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "probe", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the ConfigMap back: %v", err)
	}
	if got.Data["k"] != "v" || got.ResourceVersion != created.ResourceVersion || got.UID == "" {
		t.Errorf("read back %v (version %s, uid %q), want the ConfigMap created at version %s", got.Data, got.ResourceVersion, got.UID, created.ResourceVersion)
	}
}
